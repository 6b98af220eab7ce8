"""FastAPI serving plugins/logreg-py's own LogReg class natively: what a data
scientist would deploy instead of a scorehost plugin. Run by benches/python.sh
under uvicorn; POST /score {"features": {...}} answers the score and reasons,
through the same SDK testing path (`scorehost_guest.testing`) the plugin's
pytest suite uses, so the model code is the one the component runs.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "guest-sdk" / "python"), str(ROOT / "plugins" / "logreg-py")]

from fastapi import FastAPI, HTTPException  # noqa: E402
from scorehost_guest import PluginError  # noqa: E402
from scorehost_guest.testing import load, score  # noqa: E402

from app import LogReg  # noqa: E402

MODEL = load(LogReg, {"model_file": "weights.json", "top_reasons": 3, "impute_missing": True},
             model_dir=ROOT / "plugins" / "logreg-py" / "model")
api = FastAPI()


@api.post("/score")
def score_one(body: dict):
    try:
        s = score(MODEL, body.get("features", {}))
    except PluginError as e:
        raise HTTPException(status_code=422 if e.kind == PluginError.INVALID_INPUT else 500, detail=e.message)
    return {"score": s.value, "reasons": [{"code": c, "weight": w} for c, w in s.reasons]}
