# Convolution synapse (conv layers, stride 1, zero padding): from one element K[o, c, a, e] of the shared
# kernel (the presynaptic kernel group, shared_param.eq) to one full-resolution LIF unit (o, y, x).
# Only taps that fall inside the input exist (a tap on the zero padding contributes 0 and is left out).
[equations]
in_idx : integer (constant)             # flat index of the input (c, y + a - padding, x + e - padding) this tap reads
p_in : 1 (linked)                       # the input trace P at in_idx (linked to the previous layer's p)
u_syn_post = w_pre * p_in : 1 (summed)  # U_full[o, y, x] receives sum_{c, a, e} K[o, c, a, e] P_pad[c, y + a, x + e]

# [gradient] slot: gw_pre, dL/dK summed over every position where the element acts (decolle_brian.derivation).
