"""A Qwen3.6-style chat template (Jinja) for synthetic models.

Same wire format as the Qwen3.5/3.6 releases: ChatML turns (``<|im_start|>role\\n ...
<|im_end|>\\n``), an assistant turn that opens a ``<think>`` block (closed at once, empty, when
``enable_thinking`` is false), reasoning of earlier assistant turns dropped except after the last
user query, tool calls as ``<tool_call>\\n<function=NAME>\\n<parameter=ARG>\\nVALUE\\n</parameter>
\\n</function>\\n</tool_call>`` and tool results as ``<tool_response>`` blocks in a user turn.
Written for this project (not copied from a release); text-only (no image/video parts).
"""

from __future__ import annotations

__all__ = ["CHAT_TEMPLATE"]

CHAT_TEMPLATE = r"""{%- if not messages %}{{- raise_exception('No messages provided.') }}{%- endif %}
{%- macro text_of(content) -%}
{%- if content is string -%}{{- content -}}
{%- elif content is iterable and content is not mapping -%}
{%- for part in content -%}{%- if part.text is defined -%}{{- part.text -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set system_text = '' %}
{%- if messages[0].role == 'system' %}{%- set system_text = text_of(messages[0].content)|trim %}{%- endif %}
{%- if tools and tools is iterable and tools is not mapping %}
{{- '<|im_start|>system\n# Tools\n\nYou may call one or more of these functions:\n\n<tools>' }}
{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\n</tools>\n\nTo call a function, reply with exactly this format and nothing after it:\n\n<tool_call>\n<function=function_name>\n<parameter=parameter_name>\nvalue\n</parameter>\n</function>\n</tool_call>' }}
{%- if system_text %}{{- '\n\n' + system_text }}{%- endif %}
{{- '<|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + system_text + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(last_query=-1) %}
{%- for message in messages %}
{%- if message.role == 'user' %}
{%- set t = text_of(message.content)|trim %}
{%- if not (t.startswith('<tool_response>') and t.endswith('</tool_response>')) %}{%- set ns.last_query = loop.index0 %}{%- endif %}
{%- endif %}
{%- endfor %}
{%- for message in messages %}
{%- set content = text_of(message.content)|trim %}
{%- if message.role == 'system' %}
{%- if not loop.first %}{{- raise_exception('The system message must come first.') }}{%- endif %}
{%- elif message.role == 'user' %}
{{- '<|im_start|>user\n' + content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{%- set reasoning = '' %}
{%- if message.reasoning_content is string %}
{%- set reasoning = message.reasoning_content %}
{%- elif '</think>' in content %}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] %}
{%- set content = content.split('</think>')[-1].lstrip('\n') %}
{%- endif %}
{%- if loop.index0 > ns.last_query %}
{{- '<|im_start|>assistant\n<think>\n' + reasoning|trim + '\n</think>\n\n' + content }}
{%- else %}
{{- '<|im_start|>assistant\n' + content }}
{%- endif %}
{%- if message.tool_calls and message.tool_calls is iterable and message.tool_calls is not mapping %}
{%- for call in message.tool_calls %}
{%- if call.function is defined %}{%- set call = call.function %}{%- endif %}
{%- if loop.first and content|trim %}{{- '\n\n' }}{%- elif not loop.first %}{{- '\n' }}{%- endif %}
{{- '<tool_call>\n<function=' + call.name + '>\n' }}
{%- if call.arguments is defined %}
{%- for name, value in call.arguments|items %}
{{- '<parameter=' + name + '>\n' }}
{%- if value is mapping or (value is sequence and value is not string) %}{{- value | tojson }}{%- else %}{{- value | string }}{%- endif %}
{{- '\n</parameter>\n' }}
{%- endfor %}
{%- endif %}
{{- '</function>\n</tool_call>' }}
{%- endfor %}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or loop.previtem.role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
{%- if loop.last or loop.nextitem.role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- else %}
{{- raise_exception('Unknown role: ' + message.role) }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- else %}{{- '<think>\n' }}{%- endif %}
{%- endif %}
"""
