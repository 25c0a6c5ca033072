# Event-driven forward synapse from presynaptic neuron j to LIF neuron i (NetworkSpec.mode = "event",
# docs/event_driven.md). The two linear filters of trace.eq move to the postsynaptic side: neuron i keeps ONE
# copy of them ([post]), fed by weighted events ([on_event]), instead of every synapse reading P_j every step.
# For constant weights this is the forward sum of forward.eq exactly (the filters are linear): u_syn_i[t] =
# sum_j W_ij P_j[t]; decolle_brian.derivation checks this against trace.eq before it derives anything.
[equations]
w : 1                             # stored weight W_ij; the derived lazy rule keeps it up to date (w_now)

[post]
dq_syn/dt = -q_syn / tau_syn : 1            # sum_j W_ij Q_j: trace.eq's Q, one per postsynaptic neuron
du_syn/dt = (q_syn - u_syn) / tau_mem : 1   # sum_j W_ij P_j[t]: trace.eq's P; replaces lif.eq's u_syn

[on_event]
q_syn_post += (1 - decay_syn) * n_events * w_now   # trace.eq's jump of Q_j, through the weight in use at arrival

# [plasticity] slot: w_now and the lazy weight update are derived (decolle_brian.derivation), not written here.
