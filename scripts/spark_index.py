"""Embed and index a corpus on Apache Spark with the gemma-encoder binary (run through scripts/spark-index).

1. Read the corpus (JSON Lines, or Parquet when the path ends in .parquet or is a Parquet directory) and
   hash-partition its rows by document id (deterministic: a retried task sees the same rows).
2. Train the IVF quantizer once, on the driver, on a seeded sample (`gemma-encoder index train`).
3. Each task pipes its partition, as JSON Lines on stdin, into `gemma-encoder index build --corpus -
   --trained … --first-id p·2^40` writing a shard directory of its own attempt (part-P-attempt-A): a task that
   is killed and retried builds a fresh shard, and only the shards of successful attempts are merged, so no
   document is lost or indexed twice.
4. The driver checks that every partition reported one shard and that the documents add up, then runs
   `gemma-encoder index merge` into the index directory and removes the shards.

The binary gets an absolute path and an explicit environment; a non-zero exit raises with its stderr, so Spark
retries the task (spark.task.maxFailures; in local mode local[N] is run as local[N,4] to do the same).
"""
import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from pyspark import TaskContext
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

ID_RANGE = 1 << 40  # internal ids per partition: partition p takes [p·2^40 + 1, (p+1)·2^40)


def child_environment():
    """What the binary sees: no inherited Spark or Python variables, only what it needs."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    for name in ("GEMMA_ENCODER_CACHE", "GEMMA_ENCODER_MAX_ISA"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def run(binary, arguments, env, stdin_lines=None):
    """Runs the binary; raises with its stderr on a non-zero exit. stdin_lines are streamed, not gathered. Its
    stderr goes to a temporary file (a pipe left unread while stdin is written could fill and block both), and
    an exception while streaming (the task interrupted) kills it instead of leaving it to build a shard from
    part of the partition."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([binary] + arguments, env=env,
                                   stdin=subprocess.PIPE if stdin_lines is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=errors)
        try:
            if stdin_lines is not None:
                try:
                    for line in stdin_lines:
                        process.stdin.write(line.encode("utf-8") + b"\n")
                    process.stdin.close()
                except BrokenPipeError:
                    pass  # the binary stopped reading (an error it reports on stderr, below)
                process.stdin = None  # closed: communicate() must not flush it
            out, _ = process.communicate()
        except BaseException:
            process.kill()
            process.wait()
            raise
        errors.seek(0)
        err = errors.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise RuntimeError(f"{binary} {' '.join(arguments)} exited with {process.returncode}: {err[-4000:]}")
    return out.decode("utf-8", "replace"), err


def local_with_retries(master):
    """local[N] runs a failed task once and gives up; local[N,4] retries it like a cluster's default."""
    match = re.fullmatch(r"local\[(\d+|\*)\]", master)
    return f"local[{match.group(1)},4]" if match else master


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="absolute path of gemma-encoder on every machine")
    parser.add_argument("--corpus", required=True, help="JSON Lines or Parquet corpus")
    parser.add_argument("--index", required=True, help="the index directory to write")
    parser.add_argument("--model", default="embeddinggemma-300m")
    parser.add_argument("--precision", default=None, help="f32 | bf16 | int8 | auto, passed to the binary (default: its f32)")
    parser.add_argument("--factory", default=None, help="IVFn,Flat | IVFn,PQm | IVFn,SQ8 (default: IVF with 4·√N lists)")
    parser.add_argument("--partitions", type=int, default=None, help="default: the master's cores × 2")
    parser.add_argument("--master", default=None,
                        help="local[N] or spark://HOST:PORT (default: spark-submit's --master, else local[*])")
    parser.add_argument("--sample-size", type=int, default=None,
                        help="rows the quantizer is trained on (default: 40 per list, at least 20,000, at most the corpus)")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--task-cpus", type=int, default=None,
                        help="spark.task.cpus: the cores one binary uses (default in local mode: the master's; on a cluster set it)")
    parser.add_argument("--work", default=None, help="shared directory for the sample, quantizer and shards (default: INDEX.work)")
    parser.add_argument("--keep-shards", action="store_true")
    args = parser.parse_args()

    binary = os.path.abspath(args.binary)
    index = os.path.abspath(args.index)
    work = os.path.abspath(args.work or index.rstrip("/") + ".work")
    os.makedirs(work, exist_ok=True)
    # One binary uses every core it has: one task per executor's worth of cores. In local mode that is the
    # master's cores (at most the machine's); on a cluster, --task-cpus or spark-submit's --conf spark.task.cpus.
    local = re.fullmatch(r"local\[(\d+|\*)(,\d+)?\]", args.master or "")
    task_cpus = args.task_cpus or (min(os.cpu_count(), int(local.group(1)) if local.group(1) != "*" else os.cpu_count())
                                   if local else None)
    builder = SparkSession.builder.appName("gemma-encoder index")
    if args.master:
        builder = builder.master(local_with_retries(args.master))
    if task_cpus:
        builder = builder.config("spark.task.cpus", str(task_cpus))
    spark = (builder.config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "true" if sys.stderr.isatty() else "false")
             .config("spark.sql.shuffle.partitions", str(args.partitions or 8))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    master, task_cpus = spark.sparkContext.master, int(spark.conf.get("spark.task.cpus", "1"))
    started = time.time()

    corpus = args.corpus
    parquet = corpus.endswith(".parquet") or (os.path.isdir(corpus) and any(f.endswith(".parquet") for f in os.listdir(corpus)))
    frame = spark.read.parquet(corpus) if parquet else spark.read.json(corpus)
    for field in (args.id_field, args.text_field):
        if field not in frame.columns:
            sys.exit(f"error: {corpus}: no field \"{field}\" (fields: {', '.join(frame.columns)})")
    if "_corrupt_record" in frame.columns:
        # Spark refuses a query of raw JSON that reads only its corrupt-record column; cached, it answers.
        frame = frame.cache()
        bad = frame.filter(F.col("_corrupt_record").isNotNull()).select("_corrupt_record").first()
        if bad is not None:
            sys.exit(f"error: {corpus}: a row is not a JSON object: {bad[0][:200]}")
    count = frame.count()
    if count == 0:
        sys.exit(f"error: {corpus}: the corpus is empty")
    partitions = args.partitions or max(1, spark.sparkContext.defaultParallelism * 2)
    factory = args.factory or default_factory(count)
    # Each row goes to the binary as the JSON object it was (the binary's own corpus parsing, metadata kept).
    rows = frame.repartition(partitions, F.col(args.id_field)).select(F.to_json(F.struct(*frame.columns)).alias("line"))

    env = child_environment()
    # 2. The quantizer, once.
    sample_path = os.path.join(work, "sample.jsonl")
    lists = re.search(r"IVF(\d+)", factory)
    sample_size = args.sample_size or min(count, max(20000, 40 * int(lists.group(1) if lists else 256)))
    fraction = min(1.0, 1.2 * sample_size / count)
    sample = frame.sample(fraction=fraction, seed=21).limit(sample_size).select(F.to_json(F.struct(*frame.columns))).collect()
    with open(sample_path, "w", encoding="utf-8") as f:
        for row in sample:
            f.write(row[0] + "\n")
    trained = os.path.join(work, "trained")
    precision = ["--precision", args.precision] if args.precision else []
    run(binary, ["index", "train", "--factory", factory, "--sample", sample_path, "-o", trained, "--model", args.model,
                 "--id-field", args.id_field, "--text-field", args.text_field] + precision, env)
    trained_at = time.time()

    # 3. One shard per partition attempt.
    shards_dir = os.path.join(work, "shards")
    os.makedirs(shards_dir, exist_ok=True)
    model, id_field, text_field = args.model, args.id_field, args.text_field

    def build(partition, lines):
        attempt = TaskContext.get().attemptNumber()
        shard = os.path.join(shards_dir, f"part-{partition:05d}-attempt-{attempt}")
        if os.path.exists(shard):
            shutil.rmtree(shard)
        iterator = iter(lines)
        first = next(iterator, None)
        if first is None:
            return iter([(partition, attempt, None, 0)])
        documents = [0]

        def stream():
            for row in itertools.chain([first], iterator):
                documents[0] += 1
                yield row.line
        run(binary, ["index", "build", "--index", shard, "--corpus", "-", "--trained", trained, "--model", model,
                     "--first-id", str(partition * ID_RANGE + 1), "--id-field", id_field, "--text-field", text_field] + precision,
            env, stream())
        return iter([(partition, attempt, shard, documents[0])])

    results = rows.rdd.mapPartitionsWithIndex(build).collect()
    built_at = time.time()
    by_partition = {}
    for partition, attempt, shard, documents in results:
        if partition in by_partition:
            raise RuntimeError(f"partition {partition} reported two shards")
        by_partition[partition] = (shard, documents)
    if sorted(by_partition) != list(range(partitions)):
        raise RuntimeError(f"shards reported for partitions {sorted(by_partition)}, expected 0…{partitions - 1}")
    indexed = sum(documents for _, documents in by_partition.values())
    if indexed != count:
        raise RuntimeError(f"the shards hold {indexed} documents, the corpus {count}")
    shards = [shard for partition in sorted(by_partition) for shard in [by_partition[partition][0]] if shard is not None]

    # 4. One index.
    run(binary, ["index", "merge", "--out", index] + shards, env)
    merged_at = time.time()
    info = json.loads(run(binary, ["index", "info", "--index", index], env)[0])
    if info["count"] != count:
        raise RuntimeError(f"the merged index holds {info['count']} documents, the corpus {count}")
    if not args.keep_shards:
        shutil.rmtree(shards_dir, ignore_errors=True)
    spark.stop()
    seconds = merged_at - started
    summary = {"documents": count, "partitions": partitions, "shards": len(shards), "factory": factory,
               "master": master, "task_cpus": task_cpus,
               "seconds": {"read_and_train": round(trained_at - started, 2), "build_shards": round(built_at - trained_at, 2),
                           "merge": round(merged_at - built_at, 2), "total": round(seconds, 2)},
               "documents_per_second": round(count / seconds, 2)}
    print(json.dumps(summary))


def default_factory(count):
    """gemma-encoder's own choice above 50,000 vectors (4·√N lists, a power of two), and at least 1 list per
    39 training rows below it (FAISS's minimum for a stable k-means)."""
    import math
    nlist = 1 << round(math.log2(4 * math.sqrt(count)))
    while nlist > 1 and nlist * 39 > count:
        nlist //= 2
    return f"IVF{nlist},Flat"


if __name__ == "__main__":
    main()
