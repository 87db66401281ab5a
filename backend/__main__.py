import os
import sys

# Before torch loads: OpenMP threads sleep while they wait instead of spinning. On a busy few-core machine the
# spinning threads of one job starved the others (the demo's CPU render ran up to 20x slower; bench/demo_render.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

sys.exit(main())
