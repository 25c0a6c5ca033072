{# Event pathway of a conv layer in mode "event": every event of the source (unit (c, y_i, x_i) of the previous
   layer, read from its event space; no spike queue, the delay is 0) runs Brian's on_pre statements for every
   output channel o and tap (a, e) whose full-resolution unit (o, y_i + pad - a, x_i + pad - e) exists, with the
   kernel element ((o c_in + c) k + a) k + e: events x c_out x k^2, no synapse list (the Synapses are empty); see
   decolle_brian/backends/conv_loops.py. The statements are Brian's vector code of on_pre; its index loads are
   the loop's arithmetic.
   Layout: output channel innermost. The statements read the kernel's variables (at k_idx) from a copy
   [c][a][e][o] (refreshed on a step with events after a step that may have changed the kernel: every learning
   step; in evaluation once per run) and the full units' variables (at
   _postsynaptic_idx) from a channel-last copy [y][x][o] (copied in before the events and back after), so for
   each event and tap the innermost loop runs over the c_out output channels, contiguous in both (vectorised):
   DvsGesture's conv 3 (1,300 events, 128 -> 128, 7 x 7) in a standalone copy of the loops, 2.05 -> 1.18 CPU ms
   per step, the kernel's copy included (0.2 ms). Loop order: block of scatter_block output channels (the last
   block narrower where c_out is not a multiple), event,
   tap, output channel of the block (32: consecutive events, of the same input channel at neighbouring
   positions, share the block's kernel slice and most unit rows), with the kernel copy's rows padded by
   kernel_row_pad values (no 4 KB aliasing between the kernel's loads and the units' stores): in a
   standalone copy of the loops, CPU ms per step, conv 2 (1,600 events) 0.85 -> 0.52, conv 3 (1,100 events)
   0.62 -> 0.44 (either change alone: no gain). Every unit still receives its events' terms in event order
   (one term per event), the same sums as before to the bit. #}
{% extends 'common_synapses.cpp' %}

{% block maincode %}
    {% set _eventspace = get_array_name(variables[pathway.eventspace_name]) %}
    {% set _arrays = {'_synaptic_pre': get_array_name(variables['_synaptic_pre']),
                      '_synaptic_post': get_array_name(variables['_synaptic_post']),
                      'k_idx': get_array_name(variables['k_idx'])} %}
    {% set _lines, _kernel, _units = conv_channel_last(vector_code, _arrays) %}
    {% set _types = array_c_types(variables, get_array_name) %}  {# each copy in its array's own C type #}
    const int _c_out = {{conv.c_out}}, _c_in = {{conv.c_in}}, _k = {{conv.k}};
    // a row of the kernel's copy (one (c, a, e), all o) is padded: rows 1 KB apart (c_out = 128) put the kernel's
    // and the units' rows at equal addresses modulo 4 KB, where a load waits on an unrelated store
    const int _k_stride = _c_out + {{kernel_row_pad}};
    const int _h = {{conv.h}}, _w = {{conv.w}}, _h_full = {{conv.h_full}}, _w_full = {{conv.w_full}};
    const int _pad = {{conv.pad}};
    const int _plane = _h_full * _w_full;
    const int _n_events = {{_eventspace}}[_c_in * _h * _w];
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    // the copies of the kernel are out of date: at the first step of a run, and (with a gate) after a step on
    // which the gate was non-zero (its optimiser step, before or after the events, may change the kernel)
    static bool _kernel_stale = true;
    {% if gate %}
    const bool _kernel_may_change = {{get_array_name(variables[gate])}}[0] != 0;
    {% else %}
    const bool _kernel_may_change = true;  // no proof that any step leaves the kernel unchanged
    {% endif %}
    if (_kernel_may_change)
        _kernel_stale = true;
    {% for _array, _copy in _kernel.items() %}
    static {{_types[_array]}} {{_copy}}[{{(conv.c_out + kernel_row_pad) * conv.c_in * conv.k * conv.k}}];
    {% endfor %}
    if (_n_events > 0)
    {
    if (_kernel_stale)
    {
        // the kernel's variables, [c][a][e][o] (blocks of conv_block output channels: conv_block rows at once)
        {% for _array, _copy in _kernel.items() %}
        for (int _o0 = 0; _o0 < _c_out; _o0 += {{conv_block}})
            for (int _j = 0; _j < _c_in * _k * _k; _j++)
                #pragma GCC unroll 16
                for (int _i = 0; _i < {{conv_block}}; _i++)
                    {{_copy}}[_j * _k_stride + _o0 + _i] = {{_array}}[(_o0 + _i) * _c_in * _k * _k + _j];
        {% endfor %}
        _kernel_stale = _kernel_may_change;
    }
    // the full units' variables, channel-last [y][x][o] (blocks of conv_block channels, as the kernel)
    {% for _array, _copy in _units.items() %}
    static {{_types[_array]}} {{_copy}}[{{conv.c_out * conv.h_full * conv.w_full}}];
    for (int _o0 = 0; _o0 < _c_out; _o0 += {{conv_block}})
        for (int _u = 0; _u < _plane; _u++)
            #pragma GCC unroll 16
            for (int _i = 0; _i < {{conv_block}}; _i++)
                {{_copy}}[_u * _c_out + _o0 + _i] = {{_array}}[(_o0 + _i) * _plane + _u];
    {% endfor %}

    // blocks of scatter_block output channels, outermost: a block's kernel slice of one input channel and the
    // unit rows of neighbouring events (events come in unit order: channel, row, column) stay in the L1 cache;
    // whole blocks, then the remaining output channels as one narrower block (each unit is in one block)
    {% set _rest = conv.c_out % scatter_block %}
    int _ob = 0;
    {% for _width in [scatter_block] + ([_rest] if _rest else []) %}
    for (; _ob + {{_width}} <= _c_out; _ob += {{_width}})
    for (int _event = 0; _event < _n_events; _event++)
    {
        const int32_t _presynaptic_idx = {{_eventspace}}[_event];
        const int _c = _presynaptic_idx / (_h * _w);
        const int _y_in = (_presynaptic_idx / _w) % _h, _x_in = _presynaptic_idx % _w;
        for (int _a = 0; _a < _k; _a++)
        {
            const int _y = _y_in + _pad - _a;
            if (_y < 0 || _y >= _h_full)
                continue;
            const int _e0 = (_x_in + _pad - _w_full + 1 > 0 ? _x_in + _pad - _w_full + 1 : 0);
            const int _e1 = (_x_in + _pad + 1 < _k ? _x_in + _pad + 1 : _k);
            for (int _e = _e0; _e < _e1; _e++)
            {
                // unit (o, y, x_i + pad - e) and kernel element (o, c, a, e) in the copies, o innermost
                const int32_t _post_row = (_y * _w_full + _x_in + _pad - _e) * _c_out;
                const int32_t _k_row = ((_c * _k + _a) * _k + _e) * _k_stride;
                #pragma GCC ivdep
                for (int _o = _ob; _o < _ob + {{_width}}; _o++)
                {
                    const int32_t _postsynaptic_idx = _post_row + _o;
                    const int32_t k_idx = _k_row + _o;
                    {{ _lines|autoindent }}
                }
            }
        }
    }
    {% endfor %}

    {% for _array, _copy in _units.items() %}
    for (int _o0 = 0; _o0 < _c_out; _o0 += {{conv_block}})
        for (int _u = 0; _u < _plane; _u++)
            #pragma GCC unroll 16
            for (int _i = 0; _i < {{conv_block}}; _i++)
                {{_array}}[(_o0 + _i) * _plane + _u] = {{_copy}}[_u * _c_out + _o0 + _i];
    {% endfor %}
    }
{% endblock %}
