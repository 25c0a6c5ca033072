{# Brian's summed_variable template whose sum runs only while the shared variable `gate` is non-zero; the
   target is 0 otherwise: for a gradient that its only reader, an optimiser step, provably ignores when the
   gate is 0 (the conv bias gradient with lr = 0, proven by decolle_brian.network.conv.gradient_gates); see
   decolle_brian/backends/conv_loops.py (gated). #}
{# USES_VARIABLES { N } #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    {% set _target_var_array = get_array_name(_target_var) %}
    {% set _index_array = get_array_name(_index_var) %}
    const int _target_size = {{constant_or_scalar(_target_size_name, variables[_target_size_name])}};
    for (int _target_idx=0; _target_idx<_target_size; _target_idx++)
    {
        {{_target_var_array}}[_target_idx + {{_target_start}}] = 0;
    }
    if ({{get_array_name(variables[gate])}}[0] != 0)
    {
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}
    for(int _idx=0; _idx<{{N}}; _idx++)
    {
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
        {{_target_var_array}}[{{_index_array}}[_idx]] += _synaptic_var;
    }
    }
{% endblock %}
