"""Package descriptions and sections from this machine's apt lists (no download beyond `apt-get update`).

Descriptions come from Debian's main/i18n Translation-en (lz4), sections from `apt-cache dumpavail`.
"""
import glob, subprocess


def descriptions():
    """{package: [short description, long description lines…]}"""
    paths = sorted(glob.glob("/var/lib/apt/lists/*_bookworm_main_i18n_Translation-en.lz4"))
    if not paths:
        raise SystemExit("no Translation-en list: run apt-get update -o Acquire::Languages=en")
    raw = subprocess.run(["lz4", "-dc", paths[0]], check=True, capture_output=True).stdout.decode("utf-8")
    result = {}
    for stanza in raw.split("\n\n"):
        package, lines = None, []
        for line in stanza.split("\n"):
            if line.startswith("Package: "):
                package = line[len("Package: "):].strip()
            elif line.startswith("Description-en: "):
                lines.append(line[len("Description-en: "):].strip())
            elif line.startswith(" ") and lines:
                body = line[1:]
                lines.append("" if body.strip() == "." else body)
        if package and lines:
            result[package] = lines
    return result


def sections():
    """{package: section without its archive area ("net", not "contrib/net")}"""
    result = {}
    avail = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    for stanza in avail.split("\n\n"):
        fields = dict(l.split(": ", 1) for l in stanza.split("\n") if ": " in l and not l.startswith(" "))
        if "Package" in fields and "Section" in fields:
            result.setdefault(fields["Package"], fields["Section"].split("/")[-1])
    return result
