# Full-resolution LIF unit (o, y, x) of a conv layer: lif.eq, with the variables below replacing or extending it.
# Its own spikes drive its refractory trace R (reference LIFLayer); the layer's output is the pooled unit (pool.eq).
# [route] is this unit's part of the pooled potential: u_pool = sum over the window of the parts = the max. The
# argmax is piecewise constant, so dL/dU = delta_pool * d(u_pooled)/du = delta_pool on the winner, 0 elsewhere
# (derived by decolle_brian.derivation, not written here).
[equations]
b : 1 (linked)                    # bias of the unit's output channel: one shared parameter (shared_param.eq w)
slot : integer (constant)         # row-major index of this unit in its pooling window; -1 outside every window
pool_idx : integer (constant)     # flat index of the pooled unit whose window holds this unit (0 when slot = -1)
win_pool : integer (linked)       # win of that pooled unit: the window index of the unit that won the max
delta_pool : 1 (linked)           # learning signal dL/du of that pooled unit
u_now : 1                         # U[t] stored for the pooled unit (Brian cannot link to u: its b is linked)

[store]
u_now = u                         # after the forward sum of the step, before the pooled unit takes the max

[route]
u_pooled = int(win_pool == slot) * u   # only the unit that won the max passes its U on to the pooled u
