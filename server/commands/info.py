"""INFO: what the server reports about itself, in Redis's shapes.

Field names follow Redis where a Redis field means the same thing (so
monitoring that reads Redis's INFO reads kvd's); kvd's own figures carry a
`kvd_` prefix or live in the persistence section.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from typing import TYPE_CHECKING

from .. import __version__
from ..context import REDIS_VERSION

if TYPE_CHECKING:
    from ..context import Context

DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                    "cpu", "errorstats", "keyspace")
_UNSAFE = str.maketrans("#:\n\r", "____")  # in a name INFO shows (Redis's getSafeInfoString)


# Random per process, as Redis makes them at start: tools tell a restart by run_id, and
# read the replication section's IDs and offsets whether or not anything replicates.
RUN_ID = os.urandom(20).hex()
REPLICATION_ID = os.urandom(20).hex()


def _server(ctx: Context, figures: dict) -> dict:
    uptime = int(figures["uptime_s"])
    config = ctx.config
    return {
        "redis_version": REDIS_VERSION,
        "kvd_version": __version__,
        "redis_mode": "standalone",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits": 64 if sys.maxsize > 2**32 else 32,
        "multiplexing_api": "epoll" if sys.platform.startswith("linux") else "select",
        "python_version": platform.python_version(),
        "process_id": os.getpid(),
        "run_id": RUN_ID,
        "tcp_port": figures["tcp_port"],
        "unix_socket": config.socket,
        "server_time_usec": int(time.time() * 1e6),
        "uptime_in_seconds": uptime,
        "uptime_in_days": uptime // 86400,
        "executable": sys.argv[0],
        "pidfile": config.pidfile,
        "data_dir": config.data_dir,
        "log_file": config.log_file,
        "cluster_enabled": 0,
    }


def _clients(ctx: Context, figures: dict) -> dict:
    return {
        "connected_clients": len(ctx.control.connections()),
        "maxclients": figures["max_clients"],
        # waiting in BLPOP and the like, or held by CLIENT PAUSE (Redis counts both)
        "blocked_clients": len(ctx.databases.blocking) + len(ctx.pause.held),
    }


def _memory(ctx: Context, figures: dict) -> dict:
    rss = used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        with open("/proc/self/statm") as f:
            fields = f.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        rss = int(fields[1]) * page
        # used: the process's own memory, without file pages shared with the page cache
        # (the mapped sealed segments a GET reads, the libraries)
        used = (int(fields[1]) - int(fields[2])) * page
    except OSError:
        pass
    lua, scripts, functions = ctx.scripts.memory()
    return {"used_memory": used, "used_memory_rss": rss, "used_memory_human": _human(used),
            "used_memory_lua": lua, "used_memory_vm_eval": lua,
            "used_memory_lua_human": _human(lua), "used_memory_scripts_eval": scripts,
            "number_of_cached_scripts": len(ctx.scripts.cache) if ctx.scripts else 0,
            "number_of_functions": len(ctx.functions.functions),
            "number_of_libraries": len(ctx.functions.libraries),
            "used_memory_vm_functions": functions,
            "used_memory_vm_total": lua + functions,
            "used_memory_functions": sum(len(library.code) for library in
                                         ctx.functions.libraries.values())}


def _persistence(ctx: Context, figures: dict) -> dict:
    stats = ctx.keyspace.stats_of_store()
    compaction = figures["compaction"]
    total, dead = stats.total_bytes, stats.dead_bytes
    return {
        "loading": 0,
        "engine": stats.engine,
        "fsync": stats.fsync,
        "aof_enabled": 1,  # every write goes to the log, as with Redis's appendonly yes
        # Compaction is kvd's AOF rewrite: under Redis's names, monitoring that knows Redis
        # (prometheus-redis-exporter's redis_aof_* metrics) shows kvd's compactions.
        "aof_rewrite_in_progress": int(compaction["compaction_in_progress"]),
        "aof_rewrite_scheduled": compaction["compaction_pending"],
        "aof_last_rewrite_time_sec": (round(float(compaction["last_compaction_duration_s"]))
                                      if compaction["last_compaction_status"] != "none" else -1),
        "aof_current_rewrite_time_sec": (-1 if figures["compaction_running_s"] is None
                                         else int(figures["compaction_running_s"])),
        "aof_last_bgrewrite_status": "err" if compaction["last_compaction_status"] == "failed"
                                     else "ok",
        "aof_last_write_status": "err" if figures["write_error"] else "ok",
        "aof_current_size": total,
        "aof_base_size": stats.live_bytes,
        "rdb_bgsave_in_progress": 0,
        "rdb_last_save_time": ctx.stats.last_save,
        "live_bytes": stats.live_bytes,
        "dead_bytes": dead,
        "total_bytes": total,
        "garbage_ratio": f"{dead / total:.4f}" if total else "0.0000",
        "segments": stats.segments,
        "kvd_corrupt_records": stats.corrupt_records,
        "write_error": figures["write_error"] or "",
        **compaction,
    }


def _stats(ctx: Context, figures: dict) -> dict:
    s = ctx.stats
    return {
        "total_connections_received": s.connections_received,
        "total_commands_processed": s.commands_processed,
        "instantaneous_ops_per_sec": s.instantaneous_ops_per_sec(),
        "total_writes_processed": s.writes_processed,
        "total_flushes": s.flushes,
        "failed_flushes": s.failed_flushes,
        "total_net_input_bytes": s.net_input_bytes,
        "total_net_output_bytes": s.net_output_bytes,
        "rejected_connections": s.rejected_connections,
        "expired_keys": s.expired_keys,
        "expired_stale_perc": f"{s.expired_stale_perc:.2f}",
        "expired_time_cap_reached_count": s.expired_time_cap_reached_count,
        "keyspace_hits": s.keyspace_hits,
        "keyspace_misses": s.keyspace_misses,
        "pubsub_channels": len(ctx.pubsub.channels),
        "pubsub_patterns": len(ctx.pubsub.patterns),
        "pubsubshard_channels": len(ctx.pubsub.shard_channels),
        "migrate_cached_sockets": 0,  # (a MIGRATE opens its own connection: dump.py)
        "total_error_replies": s.error_replies,
        "protocol_errors": s.protocol_errors,
        "signals_received": s.signals_received,
        "kvd_longest_pass_ms_last_minute": figures["longest_pass_ms"],
        "kvd_slow_passes": figures["slow_passes"],
        "kvd_watchdog_stack_dumps": figures["watchdog_stack_dumps"],
    }


def _replication(ctx: Context, figures: dict) -> dict:
    # A server without replicas, as Redis describes one: no backlog, offset 0.
    return {"role": "master", "connected_slaves": 0, "master_failover_state": "no-failover",
            "master_replid": REPLICATION_ID, "master_replid2": "0" * 40,
            "master_repl_offset": 0, "second_repl_offset": -1, "repl_backlog_active": 0,
            "repl_backlog_size": 0, "repl_backlog_first_byte_offset": 0,
            "repl_backlog_histlen": 0}


def _cpu(ctx: Context, figures: dict) -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "used_cpu_sys": f"{usage.ru_stime:.6f}",
        "used_cpu_user": f"{usage.ru_utime:.6f}",
        "used_cpu_sys_children": f"{children.ru_stime:.6f}",
        "used_cpu_user_children": f"{children.ru_utime:.6f}",
    }


def _commandstats(ctx: Context, figures: dict) -> dict:
    fields = {}
    for name, stat in sorted(ctx.stats.commands.items()):
        if stat.calls or stat.rejected or stat.failed:
            usec = stat.ns // 1000
            per_call = usec / stat.calls if stat.calls else 0
            fields[f"cmdstat_{name.translate(_UNSAFE)}"] = (
                f"calls={stat.calls},usec={usec},usec_per_call={per_call:.2f},"
                f"rejected_calls={stat.rejected},failed_calls={stat.failed}")
    return fields


def _errorstats(ctx: Context, figures: dict) -> dict:
    return {f"errorstat_{code.translate(_UNSAFE)}": f"count={count}"
            for code, count in sorted(ctx.stats.errors.items())}


def _keyspace(ctx: Context, figures: dict) -> dict:
    return ctx.databases.info()


_SECTIONS = {
    "server": _server, "clients": _clients, "memory": _memory, "persistence": _persistence,
    "stats": _stats, "replication": _replication, "cpu": _cpu,
    "commandstats": _commandstats, "errorstats": _errorstats, "keyspace": _keyspace,
}


def render(ctx: Context, sections: list[str]) -> str:
    """INFO's text: `# Section` headers and `field:value` lines, CRLF-separated."""
    if any(s in ("all", "everything") for s in sections):
        wanted = list(_SECTIONS)
    else:  # the sections named, and the default ones with "default" (or none named)
        default = not sections or "default" in sections
        wanted = [s for s in _SECTIONS if s in sections or (default and s in DEFAULT_SECTIONS)]
    blocks = []
    figures = ctx.control.figures()
    for name in wanted:
        fields = _SECTIONS[name](ctx, figures)
        lines = [f"# {name.capitalize()}"] + [f"{k}:{v}" for k, v in fields.items()]
        blocks.append("\r\n".join(lines))
    return "\r\n\r\n".join(blocks) + "\r\n" if blocks else ""


def _human(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.2f}{unit}"
        n /= 1024
    return f"{n:.2f}T"
