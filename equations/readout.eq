# Fixed random local readout of one layer (never trained) and its local loss.
[equations]
y = y_syn + g : 1                 # readout y_k = sum_i G_ki m_i S_i + g_k
y_syn : 1                         # sum_i G_ki m_i S_i, written by the readout synapses (summed)
g : 1 (constant)                  # fixed random readout bias g_k
target : 1                        # one-hot target of the current sample, class k
err : 1                           # dL/dy_k, the derived derivative of the loss (error slot)
