# Fixed random readout synapse from LIF neuron i to readout unit k of the same layer.
[equations]
G : 1 (constant)                  # readout weight G_ki, fixed
y_syn_post = G * mask_pre * s_pre : 1 (summed)   # y_k[t] receives G_ki m_i S_i[t] (dropped-out spikes)

# [backprojection] slot: bp_pre = dy/dS_pre * err_post is derived (decolle_brian.derivation).
