# Presynaptic traces of a neuron's own output events (the next layer's P_j, Q_j of docs/model.md).
[equations]
dq/dt = -q / tau_syn : 1          # synaptic trace Q: decays by decay_syn = exp(-dt/tau_syn) per step
dp/dt = (q - p) / tau_mem : 1     # membrane trace P: P[t] = decay_mem P[t-1] + (1 - decay_mem) Q[t-1]

[on_event]
q += (1 - decay_syn) * n_events   # Q[t] = decay_syn Q[t-1] + (1 - decay_syn) S[t]; n_events may be > 1
