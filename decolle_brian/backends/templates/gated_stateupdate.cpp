{# Brian's stateupdate template (run_regularly code) run only while the shared variable `gate` is non-zero: for
   statements that provably leave every variable unchanged when it is 0 (the optimiser step of the shared conv
   parameters with lr = 0, proven by decolle_brian.network.conv.gradient_gates); see
   decolle_brian/backends/conv_loops.py (gated). #}
{# USES_VARIABLES { N } #}
{# ALLOWS_SCALAR_WRITE #}
{% extends 'common_group.cpp' %}

{% block maincode %}
    if ({{get_array_name(variables[gate])}}[0] != 0)
    {
    const size_t _vectorisation_idx = -1;
    {{scalar_code|autoindent}}
    const int _N = {{constant_or_scalar('N', variables['N'])}};
    for(int _idx=0; _idx<_N; _idx++)
    {
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
    }
    }
{% endblock %}
