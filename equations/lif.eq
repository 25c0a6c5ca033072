# DECOLLE leaky integrate-and-fire neuron (the paper's LIF layer, reference LIFLayer).
[equations]
dr/dt = -r / tau_ref : 1          # refractory trace R: decays by decay_ref = exp(-dt/tau_ref) per step
u = u_syn + b + r : 1             # membrane potential U[t] = sum_j W_ij P_j[t] + b_i + R_i[t]
u_syn : 1                         # sum_j W_ij P_j[t], written by the forward synapses (summed)
b : 1                             # bias, learned; with threshold 0 it acts as a (negative) threshold
s : 1                             # spike flag S[t]: 1 in the step of a spike, else 0
mask : 1                          # dropout multiplier of the readout path (0 or 1/(1-p); 1 without dropout)
bp : 1                            # sum_k dL/dy_k dy_k/dS_i, back-projected through the fixed readout
delta : 1                         # local learning signal E_i = dL/dU_i (derived), used by the weight step

[threshold]
u > 0                             # S[t] = Heaviside(U[t]); the surrogate replaces its derivative

[reset]
s = 1                             # remember the spike for readout and refractory jump

[after_decay]
r -= (1 - decay_ref) * w_rp * s   # R[t] = decay_ref R[t-1] - (1 - decay_ref) w_rp S[t-1]: jump after decay
s = 0                             # new step: no spike yet
