{# Forward sum of a conv layer onto its full-resolution units, U_syn[o, y, x] = sum_{c, a, e} K[o, c, a, e]
   P[c, y + a - pad, x + e - pad], as loops over the convolution instead of a synapse list (the Synapses are
   empty); see decolle_brian/backends/conv_loops.py. The statements are Brian's vector code of the summed
   variable; the three indices it loaded per synapse are the loop's arithmetic. Per output channel o, input
   channel c and tap (a, e), the kernel element is a loop invariant and the innermost loop runs along a row of
   the output and of the input: contiguous, vectorised, of a fixed length. The input is read from a zero-padded
   copy (_in_pad[c, y + a, x + e], made once per step), so no loop bound depends on the tap; a padding tap adds
   K * 0, which leaves every sum unchanged, and every unit receives its terms in the same order (c, a, e).
   Output channels go in blocks of conv_block (a divisor of c_out): the block's sums build up in a local
   plane (_acc, in the L1/L2 cache), so each input row is read from memory once per block instead of once per
   channel (the batched dense layer, a 1 x 1 convolution over the batch, reads its 2048 x 72 inputs 4x less
   often: 3.3x on its forward sum); each unit's sum still starts at 0 and takes its terms in the order
   (c, a, e), so the sums are the same to the bit.
   A kernel of k > 1 (the conv layers proper) adds the k taps (a, 0..k-1) of a kernel row to each unit of the
   block (tap_block channels) in registers ("register taps", as conv_forward_sum_batch.cpp): per block, input
   channel c, kernel row a and output row y, the loop along the row (vectorised) loads the block's sums once,
   adds for each tap e the terms of all channels of the block (one input load for tap_block multiply-adds) and
   stores them once: one load and store per unit and kernel row instead of one per tap. DvsGesture's conv 3
   (128 -> 128, 16 x 16, batch 1) in a standalone copy of the loops: 13 -> 3.9 CPU ms per sum. Every unit
   still receives its terms in the order (c, a, e) as written; -ffast-math may reassociate the k taps of a row,
   so a sum may differ from the tap-per-row loop in its last bits (measured at most 7e-14; a fixed order per
   build). #}
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
    const int _pad = {{conv.pad}};
    {# k = 1: a row of the copy and of the sums padded to whole vector registers (row_lanes values), so the
       fully unrolled row loop has no remainder (float32 rows of 72: 2.5x faster in a standalone copy); the extra
       columns of the copy stay 0 and their sums are never read. Only where the statements read nothing at the
       unit's index (it would lie past the row). row_lanes 1: rows as they are #}
    {% set _w_row = conv.w + 2 * conv.pad %}
    {% if conv.k == 1 and '[_postsynaptic_idx]' not in (conv_code_lines(vector_code, _arrays, _inputs)|join('\n')) %}
    {% set _w_row = (_w_row + row_lanes - 1) // row_lanes * row_lanes %}
    {% endif %}
    const int _h_pad = _h + 2 * _pad, _w_pad = {{_w_row}};  // a row of the zero-padded copy
    // zero-padded copies of the inputs read at in_idx (the border stays 0: static storage, never written)
    {% for _array, _copy in _inputs.items() %}
    static {{_copy_types[_copy]}} {{_copy}}[{{conv.c_in * (conv.h + 2 * conv.pad) * _w_row}}];
    for (int _c = 0; _c < _c_in; _c++)
        for (int _y = 0; _y < _h; _y++)
            for (int _x = 0; _x < _w; _x++)
                {{_copy}}[(_c * _h_pad + _y + _pad) * _w_pad + _x + _pad] = {{_array}}[(_c * _h + _y) * _w + _x];
    {% endfor %}
    const int _plane = _h_full * _w_full;
    const int _block = {{conv_block}};
    {% set _in_registers = conv_block * conv.h_full * _w_row <= register_tile %}
    {% if conv.k > 1 and tap_block * conv.h_full * conv.w_full > 8192 %}
    static {{_float}} _acc[{{tap_block * conv.h_full * conv.w_full}}];  // the sums of one block of output channels
    {% elif conv.k == 1 and not _in_registers %}
    static {{_float}} _acc[{{conv_block * conv.h_full * _w_row}}];  // the sums of one block of output channels
    {% endif %}
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    {% if conv.k > 1 %}
    {% set _acc_local = tap_block * conv.h_full * conv.w_full <= 8192 %}
    const int _tap_block = {{tap_block}};
    {% if _acc_local %}
    // blocks of output channels in parallel (OpenMP threads): each unit's sum is one thread's, in the same order
    {{ openmp_pragma('parallel-static') }}
    {% endif %}
    for (int _o0 = 0; _o0 < _c_out; _o0 += _tap_block)
    {
        {% if _acc_local %}
        {{_float}} _acc[{{tap_block * conv.h_full * conv.w_full}}];  // at most 64 kB: in the L1/L2 cache
        {% endif %}
        for (int _t = 0; _t < _tap_block * _plane; _t++)
            _acc[_t] = 0;
        for (int _c = 0; _c < _c_in; _c++)
        for (int _a = 0; _a < _k; _a++)
        // output rows whose kernel row a reads a padding row add only K * 0 (the padding taps above): skipped,
        // the same sums (DvsGesture's 16 x 16 layers: 12 of 112 rows per input channel)
        for (int _y = (_pad > _a ? _pad - _a : 0); _y < (_h + _pad - _a < _h_full ? _h + _pad - _a : _h_full); _y++)
        {
            const int32_t _row_in = (_c * _h_pad + _y + _a) * _w_pad;  // in the padded copy, tap column 0
            #pragma GCC ivdep
            for (int _x = 0; _x < _w_full; _x++)
            {
                // the block's sums of unit (y, x) in registers over the k taps of kernel row a
                {{_float}} _sum[{{tap_block}}];
                #pragma GCC unroll 16
                for (int _i = 0; _i < _tap_block; _i++)
                    _sum[_i] = _acc[(_i * _h_full + _y) * _w_full + _x];
                #pragma GCC unroll {{conv.k}}
                for (int _e = 0; _e < _k; _e++)
                {
                    #pragma GCC unroll 16
                    for (int _i = 0; _i < _tap_block; _i++)
                    {
                        const int _o = _o0 + _i;
                        const int32_t _presynaptic_idx = ((_o * _c_in + _c) * _k + _a) * _k + _e;
                        const int32_t _postsynaptic_idx = (_o * _h_full + _y) * _w_full + _x;
                        const int32_t in_idx = _row_in + _e + _x;
                        {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                        _sum[_i] += _synaptic_var;
                    }
                }
                #pragma GCC unroll 16
                for (int _i = 0; _i < _tap_block; _i++)
                    _acc[(_i * _h_full + _y) * _w_full + _x] = _sum[_i];
            }
        }
        for (int _t = 0; _t < _tap_block * _plane; _t++)
            {{_target_var_array}}[_o0 * _plane + _t + {{_target_start}}] = _acc[_t];
    }
    {% else %}
    {% if _in_registers %}
    // blocks of output channels in parallel (OpenMP threads): each unit's sum is one thread's, in the same order
    {{ openmp_pragma('parallel-static') }}
    {% endif %}
    for (int _o0 = 0; _o0 < _c_out; _o0 += _block)
    {
        {% if _in_registers %}
        // small enough for the registers: a local array of fixed size, fully unrolled loops
        {{_float}} _acc[{{conv_block * conv.h_full * _w_row}}];
        {% endif %}
        for (int _t = 0; _t < _block * _h_full * _w_pad; _t++)
            _acc[_t] = 0;
        for (int _c = 0; _c < _c_in; _c++)
        for (int _a = 0; _a < _k; _a++)
        for (int _e = 0; _e < _k; _e++)
        {% if _in_registers %}
        #pragma GCC unroll 16
        {% endif %}
        for (int _i = 0; _i < _block; _i++)
        {
            const int _o = _o0 + _i;
            const int32_t _presynaptic_idx = ((_o * _c_in + _c) * _k + _a) * _k + _e;
            {{_float}}* __restrict const _acc_o = _acc + _i * _h_full * _w_pad;  // restrict: the kernel element stays in a register
            for (int _y = 0; _y < _h_full; _y++)
            {
                const int32_t _row_post = (_o * _h_full + _y) * _w_full;
                const int32_t _row_in = (_c * _h_pad + _y + _a) * _w_pad + _e;  // in the padded copy
                // vectorised as a loop: fully unrolled (fixed length), the ivdep would be lost and the kernel
                // element reloaded after every store (the compiler cannot tell the arrays apart): 3.5x slower
                #pragma GCC ivdep
                {% if _in_registers %}
                #pragma GCC unroll 1024
                {% else %}
                #pragma GCC unroll 1
                {% endif %}
                for (int _x = 0; _x < _w_pad; _x++)
                {
                    const int32_t _postsynaptic_idx = _row_post + _x;
                    const int32_t in_idx = _row_in + _x;
                    {{ conv_code_lines(vector_code, _arrays, _inputs)|autoindent }}
                    _acc_o[_y * _w_pad + _x] += _synaptic_var;
                }
            }
        }
        {% if _w_row == conv.w_full %}
        for (int _t = 0; _t < _block * _plane; _t++)
            {{_target_var_array}}[_o0 * _plane + _t + {{_target_start}}] = _acc[_t];
        {% else %}
        for (int _r = 0; _r < _block * _h_full; _r++)  // the rows without their padding
            for (int _x = 0; _x < _w_full; _x++)
                {{_target_var_array}}[(_o0 * _h_full + _r) * _w_full + _x + {{_target_start}}] = _acc[_r * _w_pad + _x];
        {% endif %}
    }
    {% endif %}
{% endblock %}
