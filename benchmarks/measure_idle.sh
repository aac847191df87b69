#!/bin/bash
# The final measurement of BENCHMARKS.md: pauses the background trainings of
# /work/runs (SIGSTOP) so the machine is otherwise idle, runs the benchmark, and ALWAYS resumes
# them (SIGCONT, via a trap) even if the benchmark fails. Usage:
#   bash benchmarks/measure_idle.sh OUTPUT.json [extra args for run_benchmarks.py]
set -u
OUT=${1:-benchmarks/results.json}; shift || true
resume() {
  pkill -CONT -f 'train.py --gin_file' || true
  pkill -CONT -f 'eval_probe.py --pixels' || true
  pkill -CONT -f 'mi_tf.scripts.(train|probe)' || true
  [ -n "${EXTRA_PIDS:-}" ] && kill -CONT $EXTRA_PIDS 2>/dev/null || true
}
trap resume EXIT INT TERM
pkill -STOP -f 'train.py --gin_file' || true
pkill -STOP -f 'eval_probe.py --pixels' || true
pkill -STOP -f 'mi_tf.scripts.(train|probe)' || true
[ -n "${EXTRA_PIDS:-}" ] && kill -STOP $EXTRA_PIDS 2>/dev/null || true
sleep 2
uptime
timeout 60 python benchmarks/run_benchmarks.py --quick --sections=train,data \
    --models=sec4_noniid,convnet_infonce_t2 > /dev/null || { echo 'smoke check failed'; exit 1; }
timeout ${BENCH_TIMEOUT:-660} python -u benchmarks/run_benchmarks.py --output="$OUT" "$@"
echo "benchmark exit code $?"
uptime
