# Pooled unit of a conv layer: max-pool on U before the spike (reference ConvLayer), over a pool x pool window
# of full-resolution units U_full[k], k = 0 .. pool*pool - 1 in row-major order, read through the linked
# variables u_in<k> (u_now of conv_unit.eq; one per window element, declared by the builder). Its spikes go to
# the readout and the next layer (which reads its traces q, p of trace.eq).
[equations]
u : 1                             # pooled potential u = max_k U_full[k] (computed by [max_first], [max_next])
win : integer                     # window index k of the unit that won the max; ties go to the first (argmax)
s : 1                             # spike flag S[t] = Heaviside(u[t]): 1 in the step of a spike, else 0
mask : 1                          # dropout multiplier of the readout path (0 or 1/(1-p); 1 without dropout)
bp : 1                            # sum_k dL/dy_k dy_k/dS, back-projected through the fixed readout
delta : 1                         # learning signal dL/du of the pooled unit (derived), routed to the winner

[threshold]
u > 0                             # S[t] = Heaviside(max-pooled U[t]); the surrogate replaces its derivative

[reset]
s = 1                             # remember the spike for the readout

[after_decay]
s = 0                             # new step: no spike yet

[max_first]
u = u_in0                         # the running max starts at window element 0
win = 0                           # ... which is the winner so far

[max_next]
win = win + int(u_in > u) * (k - win)   # k = 1 .. pool*pool-1, u_in = u_in<k>: strictly greater wins (ties: first)
u = clip(u_in, u, inf)            # running max: max(u_in<k>, u)
