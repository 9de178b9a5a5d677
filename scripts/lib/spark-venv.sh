# Sourced (from the repository root) by scripts/spark-index and scripts/test: the private venv .build/spark-venv
# with PySpark 4.3.0 from PyPI (it carries Spark's jars; no Spark install needed for local mode), and Java 17
# from Debian (Spark 4 needs 17 or later; other JVMs may be on the machine, so JAVA_HOME is pinned).
# spark_python prints the venv's python, making the venv when missing; spark_java_home prints JAVA_HOME,
# installing openjdk-17-jre-headless when no Java 17 is found.
spark_python() {
  local venv=.build/spark-venv
  [ -x $venv/bin/python ] || python3 -m venv $venv >&2
  if ! $venv/bin/python -c "import pyspark; assert pyspark.__version__ == '4.3.0'" 2>/dev/null; then
    $venv/bin/pip install -q "pyspark==4.3.0" >&2 || return 1
  fi
  echo $venv/bin/python
}

spark_java_home() {
  local home
  for home in /usr/lib/jvm/java-17-openjdk-*; do
    [ -x "$home/bin/java" ] && { echo "$home"; return 0; }
  done
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless >/dev/null || return 1
  for home in /usr/lib/jvm/java-17-openjdk-*; do
    [ -x "$home/bin/java" ] && { echo "$home"; return 0; }
  done
  echo "error: no Java 17 under /usr/lib/jvm after installing openjdk-17-jre-headless" >&2
  return 1
}
