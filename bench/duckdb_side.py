"""DuckDB side of bench/compare.rs: loads the workload's CSV in-process and
runs the seven standard queries, cold then warm (median of 5 after a
warm-up). Prints one JSON object on stdout.

    python3 bench/duckdb_side.py EVENTS.csv DAY_START_MS
"""
import json
import resource
import statistics
import sys
import time

import duckdb

DAY_MS = 86_400_000


def main():
    csv, start = sys.argv[1], int(sys.argv[2])
    stop = start + DAY_MS
    con = duckdb.connect()
    t0 = time.perf_counter()
    con.execute(
        "CREATE TABLE request AS SELECT * FROM read_csv(?, header=true, "
        "columns={'t': 'BIGINT', 'duration_ms': 'DOUBLE', 'path': 'VARCHAR', "
        "'status': 'INTEGER', 'user': 'VARCHAR'})",
        [csv],
    )
    ingest_s = time.perf_counter() - t0
    count = con.execute("SELECT count(*) FROM request").fetchone()[0]
    where = f"t >= {start} AND t < {stop}"
    most_common = sys.argv[3] if len(sys.argv) > 3 else "/"

    def bucket(step):
        return f"(t // {step}) * {step}"

    queries = [
        ("Q1", 60_000, f"SELECT {bucket(60_000)} AS b, count(*) FROM request WHERE {where} GROUP BY b"),
        ("Q2", 300_000, f"SELECT {bucket(300_000)} AS b, sum(duration_ms) FROM request WHERE {where} AND path = '{most_common}' GROUP BY b"),
        ("Q3", 3_600_000, f"SELECT {bucket(3_600_000)} AS b, max(duration_ms) FROM request WHERE {where} GROUP BY b"),
        ("Q4", 300_000, f"SELECT {bucket(300_000)} AS b, median(duration_ms) FROM request WHERE {where} GROUP BY b"),
        ("Q5", 3_600_000, f"SELECT {bucket(3_600_000)} AS b, count(DISTINCT \"user\") FROM request WHERE {where} GROUP BY b"),
        ("Q6", 60_000, f"SELECT {bucket(60_000)} AS b, count(*) FILTER (WHERE status >= 500)::DOUBLE / count(*) FROM request WHERE {where} GROUP BY b"),
        ("Q7", 10_000, f"SELECT {bucket(10_000)} AS b, count(*) FROM request WHERE {where} GROUP BY b"),
    ]
    out = []
    for name, step, sql in queries:
        def run():
            t = time.perf_counter()
            rows = con.execute(sql).fetchall()
            return (time.perf_counter() - t) * 1000, rows

        cold_ms, rows = run()
        run()
        warm = [run()[0] for _ in range(5)]
        out.append({
            "query": name,
            "step": step,
            "cold_ms": cold_ms,
            "warm_ms": statistics.median(warm),
            "bins": [[int(b), None if v is None else float(v)] for b, v in rows],
        })
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"events": count, "ingest_s": ingest_s, "peak_rss_mib": peak_kib / 1024, "queries": out}))


if __name__ == "__main__":
    main()
