#!/usr/bin/env bash
# The spark-submit recipe of docs/operations.md ("Spark", "On a cluster"), run for real
# against a Spark standalone cluster on this machine: a master and one worker on 127.0.0.1,
# started with the spark-class launcher that pyspark's pip package ships. It runs
# `linkage run --engine spark` through spark-submit on a small generated input, then the
# DuckDB engine on the same input, and compares the two runs' memberships.
#
# Usage (from the repository root; takes about two minutes on 2 cores):
#   flock /tmp/linkage-heavy.lock bench/spark_standalone.sh [ACCOUNTS]
#
# The cluster's processes are stopped on exit; its logs stay in the printed work folder.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
accounts=${1:-5000}
spark_home=$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
work=$(mktemp -d /tmp/linkage-standalone-XXXXXX)
echo "work folder: $work"
export SPARK_LOG_DIR=$work/logs SPARK_LOCAL_IP=127.0.0.1
# The worker's Python processes import linkage: this checkout, not an installed copy.
export PYTHONPATH=$root

# Ports away from the defaults (8080, 8081), which other tools on a shared machine may use.
"$spark_home/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port 7077 --webui-port 18080 >"$work/master.log" 2>&1 &
master=$!
"$spark_home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
    --host 127.0.0.1 --cores 2 --memory 4g --webui-port 18081 --work-dir "$work/worker" \
    spark://127.0.0.1:7077 >"$work/worker.log" 2>&1 &
worker=$!
trap 'kill "$worker" "$master" 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 60); do
    grep -q "Successfully registered with master" "$work/worker.log" && break
    sleep 1
done
grep -q "Successfully registered with master" "$work/worker.log" \
    || { echo "the worker did not register; see $work/worker.log" >&2; exit 1; }

"$py" -m linkage generate --out "$work/input" --accounts "$accounts" --seed 1 >/dev/null
cat >"$work/nightly.toml" <<EOF
[engine.spark]
staging = "$work/staging"   # on a real cluster: hdfs:// or s3a://, reachable by every executor
buckets = 8
EOF
export LINKAGE_SECRET=standalone-recipe-secret-0123456789

start=$(date +%s)
"$spark_home/bin/spark-submit" --master spark://127.0.0.1:7077 --deploy-mode client \
    --conf spark.pyspark.python="$py" \
    --conf spark.pyspark.driver.python="$py" \
    --conf spark.executorEnv.PYTHONPATH="$root" \
    --conf spark.executor.cores=2 --conf spark.executor.memory=2g \
    --conf spark.driver.memory=2g --conf spark.sql.shuffle.partitions=8 \
    --conf spark.ui.enabled=false \
    "$root/linkage/__main__.py" \
    run --engine spark --input "$work/input" --db "sqlite:///$work/spark.db" \
        --config "$work/nightly.toml" >"$work/spark-submit.out" 2>"$work/spark-submit.err" \
    || { tail -30 "$work/spark-submit.err" >&2; exit 1; }
echo "spark-submit run: $(( $(date +%s) - start )) s, run id $(tail -1 "$work/spark-submit.out")"
grep -q "Registering app linkage" "$work/master.log" \
    && echo "the run was an application of the standalone master" \
    || { echo "the run did not use the standalone master" >&2; exit 1; }
grep -c "Launching executor" "$work/master.log" | sed 's/^/executors launched: /'

"$py" -m linkage run --input "$work/input" --db "sqlite:///$work/duckdb.db" --quiet >/dev/null
"$py" - "$work" <<'EOF'
import sqlite3, sys
work = sys.argv[1]
rows = {}
for name in ("spark", "duckdb"):
    with sqlite3.connect(f"{work}/{name}.db") as c:
        rows[name] = sorted(c.execute("SELECT account_id, cluster_id FROM memberships"))
same = rows["spark"] == rows["duckdb"]
print(f"memberships: {len(rows['spark'])} rows, identical to the DuckDB engine's: {same}")
sys.exit(0 if same and rows["spark"] else 1)
EOF
