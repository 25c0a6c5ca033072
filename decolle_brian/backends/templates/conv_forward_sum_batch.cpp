{# Forward sum of a BATCHED conv layer (B samples side by side, one shared kernel) onto its full-resolution
   units, U_syn[o, y, x, b] = sum_{c, a, e} K[o, c, a, e] P[c, y + a - pad, x + e - pad, b], as loops over the
   convolution instead of a synapse list (decolle_brian/backends/conv_loops.py). The sample b is the innermost
   axis of every unit index (unit (o, y, x) of sample b is ((o H_full + y) W_full + x) B + b, input (c, y, x) of
   sample b is ((c H + y) W + x) B + b: the unit layout of decolle_brian/network/batch.py), so a row of the output
   and of the zero-padded input copy is W_full B and W_pad B contiguous values, (x, b) row-major, and tap (a, e)
   reads the input row shifted by e B. Per output channel o, input channel c, kernel row a and output row y, the
   loop over the row's (x, b) values is vectorised and adds the k taps e of the kernel row in order in a register
   (unrolled): one load and store of each unit per kernel row instead of one per tap, 2.7x faster at B = 16 on
   DvsGesture than a row per tap (conv_forward_sum.cpp's loop). Every unit receives its terms in the order
   (c, a, e) as written; -ffast-math may reassociate the k taps of a kernel row, so a sum may differ from batch 1
   in its last bits (a fixed order per build). The statements are Brian's vector code of the summed variable. #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {% set _float = c_data_type(_target_var.dtype) %}  {# the sums: in the target's own C type #}
    {% set _target_var_array = get_array_name(_target_var) %}
    {% set _arrays = {'_synaptic_pre': get_array_name(variables['_synaptic_pre']),
                      '_synaptic_post': get_array_name(variables['_synaptic_post']),
                      'in_idx': get_array_name(variables['in_idx'])} %}
    {% set _inputs = {} %}
    {% set _copy_types = {} %}
    {% for _name in conv_inputs %}
    {% set _ = _inputs.update({get_array_name(variables[_name]): '_in_pad' ~ loop.index0}) %}
    {% set _ = _copy_types.update({'_in_pad' ~ loop.index0: c_data_type(variables[_name].dtype)}) %}
    {% endfor %}
    const int _c_out = {{conv.c_out}}, _c_in = {{conv.c_in}}, _k = {{conv.k}};
    const int _h = {{conv.h}}, _w = {{conv.w}}, _h_full = {{conv.h_full}}, _w_full = {{conv.w_full}};
    const int _pad = {{conv.pad}}, _B = {{conv.batch}};
    const int _h_pad = _h + 2 * _pad, _w_pad = _w + 2 * _pad;
    // zero-padded copies of the inputs read at in_idx, [c][y][x][b] (the border stays 0: static, never written)
    {% for _array, _copy in _inputs.items() %}
    static {{_copy_types[_copy]}} {{_copy}}[{{conv.c_in * (conv.h + 2 * conv.pad) * (conv.w + 2 * conv.pad) * conv.batch}}];
    for (int _c = 0; _c < _c_in; _c++)
        for (int _y = 0; _y < _h; _y++)
            for (int _xb = 0; _xb < _w * _B; _xb++)
                {{_copy}}[((_c * _h_pad + _y + _pad) * _w_pad + _pad) * _B + _xb] = {{_array}}[(_c * _h + _y) * _w * _B + _xb];
    {% endfor %}
    for (int _t = 0; _t < _c_out * _h_full * _w_full * _B; _t++)
        {{_target_var_array}}[_t + {{_target_start}}] = 0;
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    for (int _o = 0; _o < _c_out; _o++)
    for (int _c = 0; _c < _c_in; _c++)
    for (int _a = 0; _a < _k; _a++)
    for (int _y = 0; _y < _h_full; _y++)
    {
        const int32_t _row_post = (_o * _h_full + _y) * _w_full * _B;
        const int32_t _row_in = (_c * _h_pad + _y + _a) * _w_pad * _B;  // in the padded copy, tap column 0
        #pragma GCC ivdep
        for (int _xb = 0; _xb < _w_full * _B; _xb++)
        {
            const int32_t _postsynaptic_idx = _row_post + _xb;
            // the row's taps e in order, summed onto the unit in a register (one load and store per unit and row)
            {{_float}} _sum = {{_target_var_array}}[_postsynaptic_idx + {{_target_start}}];
            #pragma GCC unroll {{conv.k}}
            for (int _e = 0; _e < _k; _e++)
            {
                const int32_t _presynaptic_idx = ((_o * _c_in + _c) * _k + _a) * _k + _e;
                const int32_t in_idx = _row_in + _e * _B + _xb;
                {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                _sum += _synaptic_var;
            }
            {{_target_var_array}}[_postsynaptic_idx + {{_target_start}}] = _sum;
        }
    }
{% endblock %}
