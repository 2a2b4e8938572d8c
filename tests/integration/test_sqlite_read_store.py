"""What the SQLite read store does beyond the shared contract: its file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twofold import Collection, ViewTransaction
from twofold.adapters.sqlite.read_store import SQLiteReadStore

NOTES = Collection("notes")
PAGE = 4096


def wal_frames(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return max(0, (wal.stat().st_size - 32) // (PAGE + 24)) if wal.exists() else 0


async def test_the_switch_of_a_rebuild_does_not_rewrite_the_old_copy(tmp_path: Path) -> None:
    # SQLite builds that scrub freed pages (secure_delete, on in Debian's) would write every
    # page of the old copy once more to drop it; the read store scrubs only what it rewrites.
    path = tmp_path / "views.db"
    views = await SQLiteReadStore.open(path)
    try:
        await views.prepare("notes", [NOTES])

        def fill(tx: ViewTransaction) -> None:
            for i in range(2000):
                tx.put("notes", f"k{i:05d}", {"text": f"{i:05d}" * 200})

        await views.commit_batch("notes", 1, fill, checkpoint=1, last_event_at=None)
        generation = await views.begin_rebuild("notes", [NOTES])
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            old_pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.close()
        assert wal_frames(path) == 0 and old_pages > 500
        await views.switch("notes", generation)
        written = wal_frames(path)
        assert 0 < written < old_pages // 10, (written, old_pages)
        assert await views.count("notes") == 0
    finally:
        await views.close()
