{# An all-to-all connect() (no condition, probability or count) of Synapses, in the order of Brian's generator
   template (presynaptic-major: synapse k = i N_post + j) as two arrays filled in place, instead of one
   push_back of each index per synapse (vectors regrown as they fill), in every run of the binary
   (decolle_brian/backends/dense_rows.py, all_to_all_connect). The dense event benchmark network (2048-500-500,
   16 samples per run; perf stat -r 15 of its binary): 8,489 -> 6,560 page faults and 22.6 -> 16-17 ms of
   system CPU per run. Only the arrays' contents are written differently; the counts and the resizing of every
   synaptic variable follow Brian's template. #}
{# USES_VARIABLES { _synaptic_pre, _synaptic_post, N_incoming, N_outgoing, N,
                    N_pre, N_post, _source_offset, _target_offset } #}
{# WRITES_TO_READ_ONLY_VARIABLES { _synaptic_pre, _synaptic_post, N_incoming, N_outgoing, N} #}
{% extends 'common_synapses.cpp' %}

{% block maincode %}
    // all-to-all, presynaptic-major: the index arrays filled in place (decolle_brian/backends/dense_rows.py)
    const size_t _N_pre = {{constant_or_scalar('N_pre', variables['N_pre'])}};
    const size_t _N_post = {{constant_or_scalar('N_post', variables['N_post'])}};
    {{_dynamic_N_incoming}}.resize(_N_post + _target_offset);
    {{_dynamic_N_outgoing}}.resize(_N_pre + _source_offset);
    const size_t _first = {{_dynamic__synaptic_pre}}.size();  // synapses of earlier connect calls stay first
    const size_t newsize = _first + _N_pre * _N_post;
    {{_dynamic__synaptic_pre}}.resize(newsize);
    {{_dynamic__synaptic_post}}.resize(newsize);
    int32_t* const _pre = &{{_dynamic__synaptic_pre}}[0];
    int32_t* const _post = &{{_dynamic__synaptic_post}}[0];
    for (size_t _i = 0; _i < _N_pre; _i++)
    {
        int32_t* const _row_pre = _pre + _first + _i * _N_post;
        int32_t* const _row_post = _post + _first + _i * _N_post;
        for (size_t _j = 0; _j < _N_post; _j++)
        {
            _row_pre[_j] = (int32_t)(_i + _source_offset);
            _row_post[_j] = (int32_t)(_j + _target_offset);
        }
        {{_dynamic_N_outgoing}}[_i + _source_offset] += _N_post;
    }
    for (size_t _j = 0; _j < _N_post; _j++)
        {{_dynamic_N_incoming}}[_j + _target_offset] += _N_pre;
    {% for varname in owner._registered_variables | variables_to_array_names(access_data=False) | sort %}
    {{varname}}.resize(newsize);
    {% endfor %}
    {{N}} = newsize;
{% endblock %}
