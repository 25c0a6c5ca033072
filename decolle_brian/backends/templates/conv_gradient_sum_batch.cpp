{# Kernel gradient of a BATCHED conv layer (B samples side by side, one shared kernel), summed over positions
   AND samples: gw[o, c, a, e] = sum_{y, x, b} (derived summand at unit (o, y, x, b) and input
   (c, y + a - pad, x + e - pad, b)); conv_gradient_sum.cpp with the sample b as the innermost axis of every unit
   and input index (the unit layout of decolle_brian/network/batch.py, see conv_forward_sum_batch.cpp). The gate
   and the skip of units without a learning signal are those of the unbatched template. The inputs are read
   from a channel-last copy, _in_t[((y_in W + x_in) B + b) c_in + c], so the innermost loop still runs over the
   input channels; the terms of each kernel element are added in a fixed order, units (y, x, b) row-major (the
   order of the unit layout). The statements are Brian's vector code of the summed variable
   (decolle_brian/backends/conv_loops.py). #}
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
    {% set _ = _inputs.update({get_array_name(variables[_name]): '_in_t' ~ loop.index0}) %}
    {% set _ = _copy_types.update({'_in_t' ~ loop.index0: c_data_type(variables[_name].dtype)}) %}
    {% endfor %}
    const int _c_out = {{conv.c_out}}, _c_in = {{conv.c_in}}, _k = {{conv.k}};
    const int _h = {{conv.h}}, _w = {{conv.w}}, _h_full = {{conv.h_full}}, _w_full = {{conv.w_full}};
    const int _pad = {{conv.pad}}, _B = {{conv.batch}};
    // the target is 0 unless this step learns (cleared only when it may hold a gradient, as unbatched)
    static bool _target_written = true;
    if (_target_written)
        for (int _t = 0; _t < _c_out * _c_in * _k * _k; _t++)
            {{_target_var_array}}[_t + {{_target_start}}] = 0;
    _target_written = false;
    {% if gate %}
    if ({{get_array_name(variables[gate])}}[0] != 0)
    {% endif %}
    {
    _target_written = true;
    // channel-last copies of the inputs read at in_idx, [y][x][b][c], and one output channel's gradient [a][e][c]
    {% for _array, _copy in _inputs.items() %}
    static {{_copy_types[_copy]}} {{_copy}}[{{conv.c_in * conv.h * conv.w * conv.batch}}];
    for (int _c = 0; _c < _c_in; _c++)
        for (int _i = 0; _i < _h * _w * _B; _i++)
            {{_copy}}[_i * _c_in + _c] = {{_array}}[_c * _h * _w * _B + _i];
    {% endfor %}
    static {{_float}} _g_o[{{conv.k * conv.k * conv.c_in}}];
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    for (int _o = 0; _o < _c_out; _o++)
    {
        bool _any = false;
        for (int _t = 0; _t < _k * _k * _c_in; _t++)
            _g_o[_t] = 0;
        for (int _y = 0; _y < _h_full; _y++)
        for (int _x = 0; _x < _w_full; _x++)
        {
            const int _a0 = (_pad > _y ? _pad - _y : 0), _a1 = (_h + _pad - _y < _k ? _h + _pad - _y : _k);
            const int _e0 = (_pad > _x ? _pad - _x : 0), _e1 = (_w + _pad - _x < _k ? _w + _pad - _x : _k);
            for (int _b = 0; _b < _B; _b++)
            {
                const int32_t _postsynaptic_idx = ((_o * _h_full + _y) * _w_full + _x) * _B + _b;
                {% if skip_zero %}
                if ({{get_array_name(variables[skip_zero])}}[_postsynaptic_idx] == 0)
                    continue;
                {% endif %}
                _any = true;
                for (int _a = _a0; _a < _a1; _a++)
                for (int _e = _e0; _e < _e1; _e++)
                {
                    {{_float}}* const _g_row = _g_o + (_a * _k + _e) * _c_in;
                    const int32_t _row_in = (((_y + _a - _pad) * _w + _x + _e - _pad) * _B + _b) * _c_in;
                    #pragma GCC ivdep
                    for (int _c = 0; _c < _c_in; _c++)
                    {
                        const int32_t _presynaptic_idx = ((_o * _c_in + _c) * _k + _a) * _k + _e;
                        const int32_t in_idx = _row_in + _c;
                        {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                        _g_row[_c] += _synaptic_var;
                    }
                }
            }
        }
        if (_any)
            for (int _c = 0; _c < _c_in; _c++)
                for (int _ae = 0; _ae < _k * _k; _ae++)
                    {{_target_var_array}}[(_o * _c_in + _c) * _k * _k + _ae + {{_target_start}}] = _g_o[_ae * _c_in + _c];
    }
    }
{% endblock %}
