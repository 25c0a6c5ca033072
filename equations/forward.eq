# Forward synapse from presynaptic neuron j (its trace P_j) to LIF neuron i of the next layer.
[equations]
w : 1                             # weight W_ij, learned by the derived rule
u_syn_post = w * p_pre : 1 (summed)   # U_i[t] receives sum_j W_ij P_j[t]

# [plasticity] slot: the weight step is derived from the loss (decolle_brian.derivation), not written here.
