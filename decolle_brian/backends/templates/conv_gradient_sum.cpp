{# Kernel gradient of a conv layer, gw[o, c, a, e] = sum_{y, x} (derived summand at unit (o, y, x) and input
   (c, y + a - pad, x + e - pad)), as loops over the convolution instead of a synapse list (the Synapses are
   empty); see decolle_brian/backends/conv_loops.py. The statements are Brian's vector code of the summed
   variable; the three indices it loaded per synapse are the loop's arithmetic. Every step the target is set
   to 0; when the gate (the kernel's step size) is 0 the optimiser step ignores it and nothing else runs;
   otherwise only units whose skip_zero variable (their learning signal) is non-zero add their taps, the
   summand of the others being 0 (both proven by the builder, decolle_brian.network.conv.gradient_gates).
   A kernel other than 1 x 1 without padding (k > 1, or k = 1 with pad > 0: _padded below) whose summand is
   proven 0 at input 0 (zero_input): the input is read from a zero-padded
   copy in tiles of grad_lanes input channels (made once per learning step); per output channel, tile and
   kernel row, the sums of the row's k taps x the tile stay in registers over the listed units while the
   tile (31 KB for DvsGesture's conv 2 and 3) stays in the L1 cache: DvsGesture's conv 2 gradient 8.0 -> 1.5
   CPU ms in a standalone copy of the loops at load 7-9 (the same sums to the bit for finite values: the proof
   takes 0 * x = 0, IEEE's 0 * inf is NaN).
   Otherwise: the input is read from a channel-last copy (_in_t[(y_in W + x_in) c_in + c], made once per learning
   step). A kernel of k > 1: per output channel, the units that add their taps are listed (row-major); for each
   tap (a, e) and tile of grad_tile input channels the tile's sums stay in registers over all these units (one
   input load per multiply-add, no load and store of the sums per unit: DvsGesture's conv 2 / conv 3 gradients
   5.2 / 3.5 -> 3.0 / 1.9 ms per learning step) and are written to gw once. Every kernel element still receives
   the same terms in the same order (units row-major), so the sums are the same to the bit. #}
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
    const int _pad = {{conv.pad}};
    // the target is 0 unless this step learns; it is cleared only when it may hold a gradient (the first step
    // of a run, the step after a learning step): burn-in and evaluation steps write nothing
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
    // copies of the inputs read at in_idx, laid out for the loop that runs: zero-padded tile-major (_padded),
    // tile-major (_gemm: 1 x 1 without padding) or channel-last (the bounded taps)
    {% set _gemm = conv.k == 1 and conv.pad == 0 %}
    {% set _padded = zero_input and not _gemm %}
    const int _hp = _h + 2 * _pad, _wp = _w + 2 * _pad;  // the zero-padded input's plane
    {% for _array, _copy in _inputs.items() %}
    {% if _padded %}
    // zero-padded, tile-major (the padded loop below): the tile of input channels from c0, width wd, is
    // [(y + pad) wp + x + pad][wd] at c0 hp wp; the padding is never written (static: 0)
    static {{_copy_types[_copy]}} {{_copy}}[{{conv.c_in * (conv.h + 2 * conv.pad) * (conv.w + 2 * conv.pad)}}];
    for (int _c = 0; _c < _c_in; _c++)
    {
        const int _c0 = _c - _c % {{grad_lanes}};
        const int _wd = (_c0 + {{grad_lanes}} <= _c_in ? {{grad_lanes}} : _c_in - _c0);
        for (int _y = 0; _y < _h; _y++)
            for (int _x = 0; _x < _w; _x++)
                {{_copy}}[_c0 * _hp * _wp + ((_y + _pad) * _wp + _x + _pad) * _wd + _c - _c0] =
                    {{_array}}[(_c * _h + _y) * _w + _x];
    }
    {% elif _gemm %}
    // tile-major (the 1 x 1 loop below): the tile of input channels from c0, width wd, is [unit][wd] at c0 * units
    static {{_copy_types[_copy]}} {{_copy}}[{{conv.c_in * conv.h * conv.w}}];
    for (int _c = 0; _c < _c_in; _c++)
    {
        const int _c0 = _c - _c % {{gemm_tile}};
        const int _wd = (_c0 + {{gemm_tile}} <= _c_in ? {{gemm_tile}} : _c_in - _c0);
        for (int _i = 0; _i < _h * _w; _i++)
            {{_copy}}[_c0 * _h * _w + _i * _wd + _c - _c0] = {{_array}}[_c * _h * _w + _i];
    }
    {% else %}
    // channel-last (the bounded-tap loop below): [(y W + x) c_in + c]
    static {{_copy_types[_copy]}} {{_copy}}[{{conv.c_in * conv.h * conv.w}}];
    for (int _c = 0; _c < _c_in; _c++)
        for (int _i = 0; _i < _h * _w; _i++)
            {{_copy}}[_i * _c_in + _c] = {{_array}}[_c * _h * _w + _i];
    {% endif %}
    {% endfor %}
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    {% if _gemm %}
    // a 1 x 1 convolution (the batched dense layer: units = the batch): gw[o, c] = sum over units u of the
    // summand at (o, u, c), a product of two matrices. Per tile of gemm_tile input channels (its inputs
    // tile-major, 18 KB: they stay in the L1 cache over all output channels), blocks of conv_block output
    // channels keep the tile's sums in registers over all units (units in order: the same sums to the bit; a
    // unit is skipped when the skip_zero variable is 0 for every channel of the block, the summands of the
    // others being 0): measured 1.6x over output channel blocks outermost, 2.7x over one channel at a time.
    const int _plane = _h_full * _w_full;
    // whole tiles, then the remaining input channels as one narrower tile
    {% set _rest = conv.c_in % gemm_tile %}
    int _c0 = 0;
    {% for _width in [gemm_tile] + ([_rest] if _rest else []) %}
    for (; _c0 + {{_width}} <= _c_in; _c0 += {{_width}})
    {
        // blocks of output channels in parallel (OpenMP threads): each element's sum is one thread's
        {{ openmp_pragma('parallel-static') }}
        for (int _o0 = 0; _o0 < _c_out; _o0 += {{conv_block}})
        {
            {{_float}} _acc[{{conv_block * _width}}];  // fixed size: kept in registers
            for (int _t = 0; _t < {{conv_block * _width}}; _t++)
                _acc[_t] = 0;
            for (int _u = 0; _u < _plane; _u++)
            {
                {% if skip_zero %}
                bool _any = false;
                for (int _i = 0; _i < {{conv_block}}; _i++)
                    _any |= {{get_array_name(variables[skip_zero])}}[(_o0 + _i) * _plane + _u] != 0;
                if (!_any)
                    continue;
                {% endif %}
                #pragma GCC unroll 16
                for (int _i = 0; _i < {{conv_block}}; _i++)
                {
                    const int32_t _postsynaptic_idx = (_o0 + _i) * _plane + _u;
                    #pragma GCC ivdep
                    #pragma GCC unroll 64
                    for (int _c = 0; _c < {{_width}}; _c++)
                    {
                        const int32_t _presynaptic_idx = (_o0 + _i) * _c_in + _c0 + _c;
                        const int32_t in_idx = _c0 * _plane + _u * {{_width}} + _c;  // tile-major
                        {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                        _acc[_i * {{_width}} + _c] += _synaptic_var;
                    }
                }
            }
            for (int _i = 0; _i < {{conv_block}}; _i++)
                for (int _c = 0; _c < {{_width}}; _c++)
                    {{_target_var_array}}[(_o0 + _i) * _c_in + _c0 + _c + {{_target_start}}] = _acc[_i * {{_width}} + _c];
        }
    }
    {% endfor %}
    {% elif _padded %}
    // per output channel: the units that add their taps (row-major), then for each tile of grad_lanes input
    // channels and kernel row a the sums of the row's k taps x the tile stay in registers over all these units,
    // read from the tile's zero-padded copy (in the L1 cache over all units: one load per multiply-add, no bounds
    // per tap). A tap on the padding adds the summand at input 0, proven 0 (zero_input): each element receives
    // the same non-zero terms in the same order (units row-major) as over the taps inside the input
    static int32_t _units[{{conv.h_full * conv.w_full}}];
    static int32_t _corner[{{conv.h_full * conv.w_full}}];  // the unit's tap (0, 0) in the padded plane
    static int32_t _row_first[{{conv.h_full + 1}}];  // the first listed unit of each output row (and the end)
    for (int _o = 0; _o < _c_out; _o++)
    {
        int _n_units = 0;
        for (int _y = 0; _y < _h_full; _y++)
        {
            _row_first[_y] = _n_units;
            for (int _u = _y * _w_full; _u < (_y + 1) * _w_full; _u++)
            {
                {% if skip_zero %}
                if ({{get_array_name(variables[skip_zero])}}[_o * _h_full * _w_full + _u] == 0)
                    continue;
                {% endif %}
                _units[_n_units] = _u;
                _corner[_n_units++] = _y * _wp + _u % _w_full;
            }
        }
        _row_first[_h_full] = _n_units;
        if (_n_units == 0)
            continue;  // the target stays 0
        int _c0 = 0;
        // whole tiles, then the remaining input channels as one narrower tile
        {% set _rest = conv.c_in % grad_lanes %}
        {% for _width in [grad_lanes] + ([_rest] if _rest else []) %}
        for (; _c0 + {{_width}} <= _c_in; _c0 += {{_width}})
        {
            const int _tile = _c0 * _hp * _wp;
            for (int _a = 0; _a < _k; _a++)
            {
                {{_float}} _acc[{{conv.k * _width}}];  // fixed size: kept in registers
                for (int _t = 0; _t < {{conv.k * _width}}; _t++)
                    _acc[_t] = 0;
                // the units of the output rows whose kernel row a reads a padding row add only zeros: skipped
                const int _y0 = _pad - _a, _y1 = _h + _pad - _a;  // rows reading the input, clamped to [0, h_full]
                const int _j0 = _row_first[_y0 < 0 ? 0 : (_y0 > _h_full ? _h_full : _y0)];
                const int _j1 = _row_first[_y1 < 0 ? 0 : (_y1 > _h_full ? _h_full : _y1)];
                for (int _j = _j0; _j < _j1; _j++)
                {
                    const int32_t _postsynaptic_idx = _o * _h_full * _w_full + _units[_j];
                    const int32_t _row_in = _tile + (_corner[_j] + _a * _wp) * {{_width}};
                    #pragma GCC unroll 16
                    for (int _e = 0; _e < {{conv.k}}; _e++)
                    {
                        #pragma GCC ivdep
                        #pragma GCC unroll 64
                        for (int _c = 0; _c < {{_width}}; _c++)
                        {
                            const int32_t _presynaptic_idx = ((_o * _c_in + _c0 + _c) * _k + _a) * _k + _e;
                            const int32_t in_idx = _row_in + _e * {{_width}} + _c;
                            {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                            _acc[_e * {{_width}} + _c] += _synaptic_var;
                        }
                    }
                    // an empty asm statement: keeps GCC from vectorising over the units instead (gathers of
                    // the inputs, DvsGesture's conv 2 14.7 vs 1.5 ms, about 10x slower; and a vectorised
                    // reduction, which -ffast-math lets GCC reorder, would change the summation order); the
                    // sums stay in registers
                    __asm__ __volatile__("");
                }
                for (int _e = 0; _e < {{conv.k}}; _e++)
                    for (int _c = 0; _c < {{_width}}; _c++)
                        {{_target_var_array}}[((_o * _c_in + _c0 + _c) * _k + _a) * _k + _e + {{_target_start}}] =
                            _acc[_e * {{_width}} + _c];
            }
        }
        {% endfor %}
    }
    {% else %}
    // per output channel: the units that add their taps (row-major), then for each tap (a, e) and tile of
    // grad_tile input channels the tile's sums stay in registers over all these units (one load of the input
    // per multiply-add, no load and store of the sums per unit); each element receives the same terms in the
    // same order (units row-major) as a loop over units outermost
    static int32_t _units[{{conv.h_full * conv.w_full}}];
    for (int _o = 0; _o < _c_out; _o++)
    {
        int _n_units = 0;
        for (int _u = 0; _u < _h_full * _w_full; _u++)
        {
            {% if skip_zero %}
            if ({{get_array_name(variables[skip_zero])}}[_o * _h_full * _w_full + _u] == 0)
                continue;
            {% endif %}
            _units[_n_units++] = _u;
        }
        if (_n_units == 0)
            continue;  // the target stays 0
        for (int _a = 0; _a < _k; _a++)
        for (int _e = 0; _e < _k; _e++)
        {
            // the units (y, x) whose tap (a, e) lies inside the input: y + a - pad in [0, h), x + e - pad in [0, w)
            const int _y0 = _pad - _a, _y1 = _h + _pad - _a, _x0 = _pad - _e, _x1 = _w + _pad - _e;
            int _c0 = 0;
            // whole tiles, then the remaining input channels as one narrower tile
            {% set _rest = conv.c_in % grad_tile %}
            {% for _width in [grad_tile] + ([_rest] if _rest else []) %}
            for (; _c0 + {{_width}} <= _c_in; _c0 += {{_width}})
            {
                {{_float}} _acc[{{_width}}];  // fixed size: kept in registers
                for (int _c = 0; _c < {{_width}}; _c++)
                    _acc[_c] = 0;
                for (int _j = 0; _j < _n_units; _j++)
                {
                    const int _u = _units[_j];
                    const int _y = _u / _w_full, _x = _u % _w_full;
                    if (_y < _y0 || _y >= _y1 || _x < _x0 || _x >= _x1)
                        continue;
                    const int32_t _postsynaptic_idx = _o * _h_full * _w_full + _u;
                    const int32_t _row_in = ((_y + _a - _pad) * _w + _x + _e - _pad) * _c_in + _c0;  // channel-last
                    #pragma GCC ivdep
                    #pragma GCC unroll 64
                    for (int _c = 0; _c < {{_width}}; _c++)
                    {
                        const int32_t _presynaptic_idx = ((_o * _c_in + _c0 + _c) * _k + _a) * _k + _e;
                        const int32_t in_idx = _row_in + _c;
                        {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                        _acc[_c] += _synaptic_var;
                    }
                    // keeps GCC from vectorising over the units (a reduction that -ffast-math lets it reorder):
                    // each element's terms are added in unit order
                    __asm__ __volatile__("");
                }
                for (int _c = 0; _c < {{_width}}; _c++)
                    {{_target_var_array}}[((_o * _c_in + _c0 + _c) * _k + _a) * _k + _e + {{_target_start}}] = _acc[_c];
            }
            {% endfor %}
        }
    }
    {% endif %}
    }
{% endblock %}
