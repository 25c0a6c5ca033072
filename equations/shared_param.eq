# A shared learned parameter of a conv layer: one kernel element K[o, c, a, e] or one channel bias b[o].
# It is stored once and used at every position of the layer (weight sharing); its gradient is summed.
[equations]
w : 1                             # the parameter, learned by the derived rule
gw : 1                            # dL/dw summed over all positions where it acts (written by summed synapses)
