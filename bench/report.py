"""Results as a markdown page (results.md) and PNG plots, from the harness's results dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

P99_TARGET_MS = 50.0
CAP_S = 120  # how long the generator waits for a backlog still being delivered (loadgen.ChatWorker.drain)
TARGETS = {
    "chat_rate": 2000,
    "idle": 10_000,
    "kib_per_conn": 30.0,
    "storm_rate": 1000.0,
}


def clean(text: str) -> str:
    """Text on one line with no pipes, for a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "/")


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def chat_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r.get('rate')}/s: failed: {clean(r['error'])[:300]}"
    extra = ""
    if r["closes"]:
        extra += f", closed {r['closes']}"
    if r["errors"]:
        extra += f", errors {r['errors']}"
    return (
        f"{r['rate']}/s: sent {r['sent']}/{r['offered']} ({r['achieved_per_s']:,.0f}/s), "
        f"p50 {fmt_ms(r['p50_ms'])} ms, p99 {fmt_ms(r['p99_ms'])} ms, lost {r['lost']} ({r['loss_pct']} %), "
        f"late {r.get('late', 0)}, "
        f"server CPU {r['server_cpu_pct']} % ({r.get('server_cpu_ms_per_msg')} ms/msg){extra}"
    )


def idle_line(r: dict[str, Any]) -> str:
    return (
        f"held {r['held']:,} of {r['requested']:,} ({r['failures'] or 'no failures'}), "
        f"{r['kib_per_conn']} KiB per connection"
    )


def storm_line(r: dict[str, Any]) -> str:
    return (
        f"{r['ok']:,} of {r['connects']:,} connected in {r['seconds']} s = {r['rate_per_s']:,.0f}/s, "
        f"failed {r['failed']} {r['failures'] or ''}"
    )


def fanout_line(r: dict[str, Any]) -> str:
    return (
        f"{r['devices']:,} devices: p50 {fmt_ms(r['p50_ms'])} ms, all received in {fmt_ms(r['all_ms'])} ms "
        f"(worst round {fmt_ms(r['worst_all_ms'])} ms), missing {r['missing']}"
    )


def chat_cell(r: dict[str, Any]) -> str:
    if "error" in r:
        return "failed (see below)"
    cell = f"{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p99_ms'])} ms"
    if r["lost"]:
        cell += f", **{r['loss_pct']:.1f} % lost**"
    if r.get("late"):
        cell += f", {r['late']:,} still arriving {CAP_S} s after the last send"
    if r["sent"] < 0.95 * r["offered"]:
        cell += f", only {r['achieved_per_s']:,.0f}/s sent"
    if r["closes"]:
        cell += ", connections closed (" + ", ".join(f"{c}x{n}" for c, n in r["closes"].items()) + ")"
    return cell


def highest_held(chat: list[dict[str, Any]]) -> int | None:
    held = [r["rate"] for r in chat if r.get("held")]
    return max(held) if held else None


def markdown(results: dict[str, Any]) -> str:
    meta, runs = results["meta"], results["runs"]
    a = meta["args"]
    v = meta["versions"]
    out = [
        "# Benchmark results",
        "",
        f"Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores, {meta['memory_gib']} GiB), Linux "
        f"{meta['kernel']}, Python {meta['python']}; Django {v['django']}, Channels {v['channels']}, "
        f"channels-redis {v['channels-redis']}, daphne {v['daphne']}, Twisted {v['twisted']}, websockets "
        f"{v['websockets']}, redis-py {v['redis']}; commit `{meta['git']}`. The load generator "
        f"({a.get('chat_procs', a['procs'])} processes for chat, {a['procs']} for the rest) runs on the same "
        "machine as the servers, PostgreSQL and Redis; "
        f"load average {' '.join(meta.get('loadavg_at_start', []))} at the start, "
        f"{' '.join(meta.get('loadavg_at_end', []))} at the end (the machine is shared). "
        f'Command: `make bench ARGS="{meta.get("command", "")}"`.',
        "",
    ]
    with_chat = {k: r["chat"] for k, r in runs.items() if r.get("chat")}
    if with_chat:
        rates = sorted({c["rate"] for chat in with_chat.values() for c in chat if "rate" in c})
        out += [
            f"## Chat: send → peer's event, {a['rooms']} two-party rooms, {a['duration']:g} s per rate",
            "",
            "p50 / p99 latency from a client's send to the other member's receipt (for the hub: "
            "`message.send` → the peer's `message.created`, persisted in PostgreSQL first).",
            "",
            "| server | " + " | ".join(f"{r:,} msgs/s" for r in rates) + " | highest rate held¹ |",
            "|---|" + "---|" * (len(rates) + 1),
        ]
        for kind, chat in with_chat.items():
            by_rate = {c.get("rate"): c for c in chat}
            cells = [chat_cell(by_rate[r]) if r in by_rate else "—" for r in rates]
            best = highest_held(chat)
            out.append(f"| {runs[kind]['label']} | " + " | ".join(cells) + f" | {f'{best:,}/s' if best else 'none'} |")
        out += [
            "",
            f"¹ p99 ≤ {P99_TARGET_MS:g} ms, nothing lost, late or refused, no connection closed, and at least "
            "95 % of the offered messages sent. *Lost*: not delivered when deliveries had stopped "
            f"for `--drain` seconds; *late*: still on its way when the generator stopped waiting, "
            f"{CAP_S} s after its last send, while deliveries were still coming.",
            "",
            "<details><summary>Every chat run in detail</summary>",
            "",
            "| server | rate | sent | sent/s | lost | late | refused | pushed back | p50 | p99 | max | ack p99 | "
            "generator lag p99 | server CPU | server CPU per message |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, chat in with_chat.items():
            for r in chat:
                if "error" in r:
                    out.append(f"| {kind} | {r.get('rate')} | failed: {clean(r['error'])[:200]} |" + " |" * 11)
                    continue
                out.append(
                    f"| {kind} | {r['rate']:,} | {r['sent']:,} | {r['achieved_per_s']:,.0f} | "
                    f"{r['lost']:,} | {r.get('late', 0):,} | {r['refused']:,} | {r['pushed_back']:,} | "
                    f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | "
                    f"{fmt_ms(r['max_ms'])} | {fmt_ms(r['ack_p99_ms'])} | {fmt_ms(r['gen_lag_p99_ms'])} | "
                    f"{r['server_cpu_pct']} % | {r.get('server_cpu_ms_per_msg', '—')} ms |"
                )
        out += ["", "</details>", "", "![chat latency and loss](chat.png)", ""]

    def section(name: str, title: str, header: str, row: Any) -> None:
        rows = [(k, r[name]) for k, r in runs.items() if r.get(name)]
        if not rows:
            return
        out.extend([f"## {title}", "", header, "|" + "---|" * (header.count("|") - 1)])
        for kind, r in rows:
            if "error" in r:
                out.append(f"| {runs[kind]['label']} | failed: {clean(r['error'])[:300]} |")
            else:
                out.append(f"| {runs[kind]['label']} | " + row(r) + " |")
        out.append("")

    section(
        "idle",
        "Idle connections per web process",
        "| server | held | failed | server RSS before → after | KiB per connection | Redis KiB per connection |",
        lambda r: (
            f"{r['held']:,} of {r['requested']:,} | {sum(r['failures'].values()):,} "
            f"| {r['rss_before_kib'] / 1024:,.0f} → {r['rss_after_kib'] / 1024:,.0f} MiB "
            f"| {r['kib_per_conn']} | {'—' if r['redis_kib_per_conn'] is None else r['redis_kib_per_conn']}"
        ),
    )
    section(
        "storm",
        "Connection storm",
        "| server | connects (in flight) | connected | refused or failed | connects/s | connect p50 / p99 |",
        lambda r: (
            f"{r['connects']:,} ({r['concurrency']}) | {r['ok']:,} | {r['failed']:,}"
            f"{' ' + str(r['failures']) if r['failures'] else ''} | {r['rate_per_s']:,.0f} "
            f"| {fmt_ms(r['connect_p50_ms'])} / {fmt_ms(r['connect_p99_ms'])} ms"
        ),
    )
    section(
        "fanout",
        "Fan-out: one event to many devices",
        "| server | users x devices | p50 delivery | all received (median round) | worst round | missing |",
        lambda r: (
            f"{r['users']:,} x {r['devices_per_user']} | {fmt_ms(r['p50_ms'])} ms | {fmt_ms(r['all_ms'])} ms "
            f"| {fmt_ms(r['worst_all_ms'])} ms | {r['missing']}"
            f"{f' (and {n} could not connect)' if (n := r.get('unconnected')) else ''}"
        ),
    )
    if any(r.get(s) for r in runs.values() for s in ("idle", "storm", "fanout")):
        out += ["![idle, storm and fan-out](capacity.png)", ""]
    if "hub" in runs:
        out += targets_table(runs["hub"])
    return "\n".join(out) + "\n"


def targets_table(hub: dict[str, Any]) -> list[str]:
    rows = []
    chat = hub.get("chat") or []
    if chat:
        best = highest_held(chat)
        worst_loss = max((r.get("lost", 0) for r in chat if "error" not in r), default=0)
        rows.append(
            (
                f"chat ≥ {TARGETS['chat_rate']:,} msgs/s persisted, p99 ≤ 50 ms, no loss",
                f"{best:,}/s" if best else "none",
                bool(best and best >= TARGETS["chat_rate"]),
            )
        )
        worst_late = max((r.get("late", 0) for r in chat if "error" not in r), default=0)
        rows.append(
            (
                "no loss at any rate",
                f"{worst_loss} lost at worst" + (f" ({worst_late:,} late at worst)" if worst_late else ""),
                worst_loss == 0 and all("error" not in r for r in chat),
            )
        )
    idle = hub.get("idle")
    if idle and "error" not in idle:
        rows.append(
            (
                f"≥ {TARGETS['idle']:,} idle connections per web process",
                f"{idle['held']:,}",
                idle["held"] >= TARGETS["idle"],
            )
        )
        rows.append(
            (
                f"≤ {TARGETS['kib_per_conn']:g} KiB per idle connection",
                f"{idle['kib_per_conn']} KiB",
                idle["kib_per_conn"] is not None and idle["kib_per_conn"] <= TARGETS["kib_per_conn"],
            )
        )
    storm = hub.get("storm")
    if storm and "error" not in storm:
        rows.append(
            (
                f"{storm['connects']:,} connects at ≥ {TARGETS['storm_rate']:,.0f}/s, none refused",
                f"{storm['rate_per_s']:,.0f}/s, {storm['failed']} failed",
                storm["rate_per_s"] >= TARGETS["storm_rate"] and storm["failed"] == 0,
            )
        )
    if not rows:
        return []
    out = ["## The hub against its targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in rows]
    return [*out, ""]


def plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    written = []
    with_chat = {k: [c for c in r.get("chat", []) if "error" not in c] for k, r in runs.items()}
    with_chat = {k: v for k, v in with_chat.items() if v}
    if with_chat:
        fig, (ax_lat, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
        for kind, chat in with_chat.items():
            rates = [c["rate"] for c in chat]
            (line,) = ax_lat.plot(rates, [c["p99_ms"] or float("nan") for c in chat], marker="o", label=f"{kind} p99")
            ax_lat.plot(
                rates,
                [c["p50_ms"] or float("nan") for c in chat],
                marker=".",
                linestyle="--",
                color=line.get_color(),
                alpha=0.6,
                label=f"{kind} p50",
            )
            ax_loss.plot(rates, [c["loss_pct"] for c in chat], marker="o", label=kind, color=line.get_color())
        ax_lat.axhline(P99_TARGET_MS, color="grey", linestyle=":", label="50 ms")
        ax_lat.set_yscale("log")
        ax_lat.set_xlabel("offered msgs/s (100 two-party rooms)")
        ax_lat.set_ylabel("send → peer latency, ms (log)")
        ax_lat.set_title("Chat latency")
        ax_lat.legend(fontsize=7)
        ax_loss.set_xlabel("offered msgs/s")
        ax_loss.set_ylabel("messages lost, %")
        ax_loss.set_title("Chat loss")
        ax_loss.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "chat.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    panels = [
        ("idle", "KiB per idle connection", lambda r: r["kib_per_conn"]),
        ("storm", "connects/s in the storm", lambda r: r["rate_per_s"]),
        ("fanout", "fan-out: all received, ms", lambda r: r["all_ms"]),
    ]
    present = [(n, t, f) for n, t, f in panels if any(r.get(n) and "error" not in r[n] for r in runs.values())]
    if present:
        fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 4), squeeze=False)
        for ax, (name, title, value) in zip(axes[0], present, strict=True):
            kinds = [k for k, r in runs.items() if r.get(name) and "error" not in r[name]]
            values = [value(runs[k][name]) or 0 for k in kinds]
            bars = ax.bar(kinds, values, color=["C0", "C1", "C2", "C3"][: len(kinds)])
            ax.bar_label(bars, fmt="%.0f" if max(values, default=0) > 20 else "%.1f", fontsize=8)
            ax.set_title(title)
            ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        path = out_dir / "capacity.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "results.md").write_text(markdown(results))
    plots(results, out_dir)


if __name__ == "__main__":  # re-render a run: python -m bench.report bench/results/results.json
    import json
    import sys

    source = Path(sys.argv[1])
    write(json.loads(source.read_text()), source.parent)
