#!/bin/bash
# Runs every model process one after another (never two at once): ref, engines, engines (reverse), ref.
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${ENGINES_WORK:-$HERE/.work}
mkdir -p "$WORK" && cd "$WORK"
REF=${REF:-$HERE/../../.venv/bin/python}
ENG=${ENG:-$WORK/venv/bin/python}
note() { echo "### $(date +%T) $1 | load: $(cut -d' ' -f1-3 /proc/loadavg) | foreign procs: $(ps -eo pid,pcpu,args --no-headers | grep -v -E 'engines|grep|kworker|kdamond|process_api|binary_backend' | awk '$2>20' | cut -c1-80 | tr '\n' ';')"; }
note "ref A";      $REF $HERE/ref.py A
note "ct2 A";      $ENG $HERE/ct2run.py A int8,int8_bfloat16,bfloat16,float32 callback; $ENG $HERE/ct2run.py A int8 cut
note "llama A";    $ENG $HERE/llamarun.py A seq; $ENG $HERE/llamarun.py A batched
note "llama B";    $ENG $HERE/llamarun.py B batched; $ENG $HERE/llamarun.py B seq
note "ct2 B";      $ENG $HERE/ct2run.py B int8 cut; $ENG $HERE/ct2run.py B float32,bfloat16,int8_bfloat16,int8 callback
note "ref B";      $REF $HERE/ref.py B
note "done"
