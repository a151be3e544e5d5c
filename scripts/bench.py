#!/usr/bin/env python3
"""Benchmark entry point: same as `storesense bench`. Example:

    python scripts/bench.py --model yolov8n-640 --model yolov8n-320 --model yolox-nano-416 --cameras 1 --cameras 3
"""

from edge.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
