"""Rich renderings of profiles for the terminal (used by the CLI)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from personalizer.profiles import Profile

__all__ = ["coefficient_bar", "profile_view"]

BAR_WIDTH = 20


def coefficient_bar(value: float, scale: float, width: int = BAR_WIDTH) -> Text:
    """A bar centred on zero: negative values grow left (red), positive right (green)."""
    half = width // 2
    n = 0 if scale <= 0 else min(half, round(abs(value) / scale * half))
    left = " " * (half - n) + ("█" * n if value < 0 else "")
    right = ("█" * n if value > 0 else "") + " " * (half - (n if value > 0 else 0))
    bar = Text()
    bar.append(left.rjust(half), style="red")
    bar.append("│", style="dim")
    bar.append(right.ljust(half), style="green")
    return bar


def profile_view(profile: Profile) -> RenderableType:
    """The profile as a table of coefficients (value, ± std, bar) with its summary."""
    head = Text.assemble(
        (profile.user_id, "bold"),
        f"  version {profile.version} · {profile.preference_count} preferences · updated "
        f"{profile.updated_at:%Y-%m-%d %H:%M} UTC",
    )
    parts: list[RenderableType] = [head]
    if profile.coefficients:
        scale = max(abs(v) for v in profile.coefficients.values()) or 1.0
        table = Table(
            title=f"coefficients over reward set {profile.reward_set_id} "
            f"(v{profile.reward_set_version})",
            title_justify="left",
        )
        table.add_column("base reward")
        table.add_column("value", justify="right")
        table.add_column("± std", justify="right")
        table.add_column("less ◀ │ ▶ more", no_wrap=True)
        for name, value in profile.coefficients.items():
            sd = profile.stddev(name)
            table.add_row(
                name, f"{value:+.3f}", "" if sd is None else f"{sd:.3f}",
                coefficient_bar(value, scale),
            )
        parts.append(table)
    else:
        parts.append(Text("no coefficients yet (onboard the user or record preferences)",
                          style="dim"))
    parts.append(Panel(profile.summary or "(no summary yet)", title="summary",
                       title_align="left", subtitle=summary_note(profile),
                       subtitle_align="left"))
    return Group(*parts)


def summary_note(profile: Profile) -> str | None:
    """Who wrote the summary, when, from how many preferences, and whether it is stale."""
    if not profile.summary:
        return None
    who = {"user": "written by the person", "summarizer": "by the summarizer"}
    note = [who.get(profile.summary_source or "", "author unknown")]
    if profile.summary_source == "summarizer":
        note.append(f"from {profile.summary_preferences} preferences")
    if profile.summary_written_at is not None:
        note.append(f"{profile.summary_written_at:%Y-%m-%d %H:%M} UTC")
    if profile.summary_stale:
        note.append("stale: some of its preferences were deleted")
    return ", ".join(note)
