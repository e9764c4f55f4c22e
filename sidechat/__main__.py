from __future__ import annotations

from sidechat.cli import main

main()
