{# Event pathway of a conv layer in mode "event": every event of the source (unit (c, y_i, x_i) of the previous
   layer, read from its event space; no spike queue, the delay is 0) runs Brian's on_pre statements for every
   output channel o and tap (a, e) whose full-resolution unit (o, y_i + pad - a, x_i + pad - e) exists, with the
   kernel element k_idx = ((o c_in + c) k + a) k + e: events x c_out x k^2, no synapse list (the Synapses are
   empty); see decolle_brian/backends/conv_loops.py. The statements are Brian's vector code of on_pre; its
   index loads are the loop's arithmetic. Loop order: output channel, event, tap. #}
{% extends 'common_synapses.cpp' %}

{% block maincode %}
    {% set _eventspace = get_array_name(variables[pathway.eventspace_name]) %}
    {% set _arrays = {'_synaptic_pre': get_array_name(variables['_synaptic_pre']),
                      '_synaptic_post': get_array_name(variables['_synaptic_post']),
                      'k_idx': get_array_name(variables['k_idx'])} %}
    const int _c_out = {{conv.c_out}}, _c_in = {{conv.c_in}}, _k = {{conv.k}};
    const int _h = {{conv.h}}, _w = {{conv.w}}, _h_full = {{conv.h_full}}, _w_full = {{conv.w_full}};
    const int _pad = {{conv.pad}};
    const int _n_events = {{_eventspace}}[_c_in * _h * _w];
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    // output channel outermost: one channel's units stay in the L1 cache over all events; every unit still
    // receives its events' terms in event order (the same sums as events outermost)
    for (int _o = 0; _o < _c_out; _o++)
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
            #pragma GCC ivdep
            for (int _e = _e0; _e < _e1; _e++)
            {
                const int32_t _postsynaptic_idx = (_o * _h_full + _y) * _w_full + _x_in + _pad - _e;
                const int32_t k_idx = ((_o * _c_in + _c) * _k + _a) * _k + _e;
                {{ conv_code_lines(vector_code, _arrays)|autoindent }}
            }
        }
    }
{% endblock %}
