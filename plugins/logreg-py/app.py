"""logreg-py — the logistic-regression scorer of plugins/logreg, in Python.

Shows: a Python scorer on the Python SDK (guest-sdk/python): the model
(intercept + one weight per feature) parsed once in `init` from a file of the
model directory, inputs declared from the model, the dense positional path
(`features.numbers()`), and signed reason codes — the largest contributions
w_i * x_i. It passes the Rust logreg's golden vectors (tests.jsonl), so both
give the same scores and reasons.

Config: `model_file` (JSON in the model dir: {"intercept": f, "weights":
{"feature": w, ...}}), `top_reasons` (default 3), `impute_missing` (default
false: every feature is required; true: a missing one contributes nothing).

Build (what plugins/artifacts does):
    componentize-py -d wit -w scorer-plugin componentize app \
        -p plugins/logreg-py -p guest-sdk/python -o logreg-py.wasm
Test the logic natively: python3 -m pytest plugins/logreg-py
Run it: scorehost call logreg-py --input '{"amount_usd_log": 6.2, "cross_border": true}'
"""

import json
import math

import scorehost_guest as sh
from scorehost_guest import Field, PluginError, Score, export_scorer, read_model_file


class LogReg(sh.Scorer):
    name = "logreg-py"
    version = "0.1.0"
    description = "Logistic regression: probability of fraud with the top signed contributions as reasons."
    outputs = [Field.float("probability", doc="P(fraud), in [0, 1]")]

    def init(self, config):
        file = config.require("model_file")
        try:
            model = json.loads(read_model_file(file))
            weights = {str(k): float(v) for k, v in sorted(model["weights"].items())}
            self.intercept = float(model["intercept"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PluginError.internal(f"model file `{file}` is not a logreg model: {e!r}") from None
        if not weights:
            raise PluginError.internal("the model has no weights")
        for name, w in weights.items():
            if not math.isfinite(w):
                raise PluginError.internal(f"weight of `{name}` is not finite: {w}")
        self.names = list(weights)
        self.weights = list(weights.values())
        self.top_reasons = config.int("top_reasons", 3)
        impute = config.bool("impute_missing", False)
        doc = "model feature (bool accepted as 0/1)"
        self.inputs = [Field.float(n, required=not impute, doc=doc) for n in self.names]

    def score(self, features):
        z = self.intercept
        contributions = []
        # All inputs are floats, so numbers() is exactly the weight order; NaN is missing.
        for name, w, x in zip(self.names, self.weights, features.numbers()):
            if x == x:
                z += w * x
                contributions.append((name, w * x))
        contributions.sort(key=lambda c: -abs(c[1]))
        s = Score(1.0 / (1.0 + math.exp(-z)))
        for name, c in contributions[: self.top_reasons]:
            s.reason(name, c)
        return s


Scorer, FrameScorer = export_scorer(LogReg)
