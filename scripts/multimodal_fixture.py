"""Text alone vs image alone vs text+image (intra, iisan, crossan) on the generated multimodal fixture.

    python scripts/multimodal_fixture.py [--out DIR] [--seeds 3] [--json]

The fixture (``ialp.candidates.fixture``): item colours are drawn only in the images, genres written only in the
texts, and each user likes one (genre, colour) class. Frozen all-MiniLM-L6-v2 and EfficientNet-Lite0 states are
cached; the side networks are trained on the leave-one-out split and tested on each user's last item.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ialp.candidates.benchmark import evaluate_models, format_table
from ialp.candidates.config import CandidatesConfig
from ialp.candidates.fixture import make_multimodal_fixture

MODELS = ("popularity", "sidesan-text", "sidesan-image", "sidesan-text-image", "sidesan-text-image-iisan",
          "sidesan-text-image-crossan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="fixture folder (default: a temporary one)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="ialp-multimodal-"))
    make_multimodal_fixture(folder)
    base = CandidatesConfig(media={"image": str(folder / "images")}, image_size=64, layer_group=2, width=64,
                            side_width=96, bottleneck=32, max_len=20, epochs=args.epochs, patience=5, lr=5e-3,
                            batch_size=128, progress=False)
    result = evaluate_models(folder, seeds=args.seeds, base=base, models=args.models.split(","))
    print(json.dumps(result) if args.json else format_table(result))


if __name__ == "__main__":
    main()
