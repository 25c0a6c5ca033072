{# Forward sum of a conv layer onto its full-resolution units, U_syn[o, y, x] = sum_{c, a, e} K[o, c, a, e]
   P[c, y + a - pad, x + e - pad], as loops over the convolution instead of a synapse list (the Synapses are
   empty); see decolle_brian/backends/conv_loops.py. The statements are Brian's vector code of the summed
   variable; the three indices it loaded per synapse are the loop's arithmetic. Per output channel o, input
   channel c and tap (a, e), the kernel element is a loop invariant and the innermost loop runs along a row of
   the output and of the input: contiguous, vectorised. Taps on the zero padding are skipped. #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {% set _target_var_array = get_array_name(_target_var) %}
    {% set _arrays = {'_synaptic_pre': get_array_name(variables['_synaptic_pre']),
                      '_synaptic_post': get_array_name(variables['_synaptic_post']),
                      'in_idx': get_array_name(variables['in_idx'])} %}
    const int _c_out = {{conv.c_out}}, _c_in = {{conv.c_in}}, _k = {{conv.k}};
    const int _h = {{conv.h}}, _w = {{conv.w}}, _h_full = {{conv.h_full}}, _w_full = {{conv.w_full}};
    const int _pad = {{conv.pad}};
    for (int _t = 0; _t < _c_out * _h_full * _w_full; _t++)
        {{_target_var_array}}[_t + {{_target_start}}] = 0;
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    for (int _o = 0; _o < _c_out; _o++)
    for (int _c = 0; _c < _c_in; _c++)
    for (int _a = 0; _a < _k; _a++)
    {
        const int _y0 = (_pad > _a ? _pad - _a : 0), _y1 = (_h + _pad - _a < _h_full ? _h + _pad - _a : _h_full);
        for (int _e = 0; _e < _k; _e++)
        {
            const int _x0 = (_pad > _e ? _pad - _e : 0), _x1 = (_w + _pad - _e < _w_full ? _w + _pad - _e : _w_full);
            const int32_t _presynaptic_idx = ((_o * _c_in + _c) * _k + _a) * _k + _e;
            for (int _y = _y0; _y < _y1; _y++)
            {
                const int32_t _row_post = (_o * _h_full + _y) * _w_full;
                const int32_t _row_in = (_c * _h + _y + _a - _pad) * _w + _e - _pad;
                #pragma GCC ivdep
                for (int _x = _x0; _x < _x1; _x++)
                {
                    const int32_t _postsynaptic_idx = _row_post + _x;
                    const int32_t in_idx = _row_in + _x;
                    {{ conv_code_lines(vector_code, _arrays)|autoindent }}
                    {{_target_var_array}}[_postsynaptic_idx + {{_target_start}}] += _synaptic_var;
                }
            }
        }
    }
{% endblock %}
