#!/usr/bin/env python3
"""Writes the golden fixtures that the Rust feature, target, scaler and metric code is checked against.

The oracle is independent of our code: indicators come from the `ta` package, windows, calendar
terms, volatility and targets from pandas, scaling and metrics from scikit-learn.
Versions are pinned in requirements.txt beside this script.

    python3 -m venv /tmp/oracle && /tmp/oracle/bin/pip install -r tests/oracle/requirements.txt
    /tmp/oracle/bin/python tests/oracle/gen_features.py

Inputs: the first BARS bars of the shipped sample (shared/core/data/EURUSD_1h_2017.csv).
Outputs (tests/fixtures/):
  features_oracle.csv  ts, every feature column of the default FeatureSpec (NaN in warm-up),
                       and target_h{1,4,12,24}
  scaler_metrics_oracle.json  StandardScaler mean/scale on the first 200 complete rows, and
                       MAE/RMSE/R² of a fixed prediction
"""

import json
import pathlib

import numpy as np
import pandas as pd
import ta
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.preprocessing import StandardScaler

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "shared/core/data/EURUSD_1h_2017.csv"
OUT = ROOT / "tests/fixtures"
BARS = 600

# Mirrors FeatureSpec::default() in shared/protocol/src/features.rs.
WINDOW = 16
VOL = [12, 24, 48]
RSI = [7, 14, 28]
ATR = [7, 14, 28]
BOLL = [10, 20, 40]
STOCH = [7, 14, 28]
MACD = [(12, 26, 9)]
HORIZONS = [1, 4, 12, 24]


def load() -> pd.DataFrame:
    df = pd.read_csv(SAMPLE, nrows=BARS).rename(columns=str.lower)
    df["time"] = pd.to_datetime(df["time"], format="%d.%m.%Y %H:%M:%S.%f", utc=True)
    return df


def features(df: pd.DataFrame) -> pd.DataFrame:
    o, h, l, c = df["open"], df["high"], df["low"], df["close"]
    cols = {}
    for k in range(WINDOW):
        cols[f"ln_open_lag{k}"] = np.log(o.shift(k) / c)
        cols[f"ln_high_lag{k}"] = np.log(h.shift(k) / c)
        cols[f"ln_low_lag{k}"] = np.log(l.shift(k) / c)
        if k > 0:
            cols[f"ln_close_lag{k}"] = np.log(c.shift(k) / c)
    hour = df["time"].dt.hour
    weekday = df["time"].dt.weekday
    cols["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    cols["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    cols["weekday_sin"] = np.sin(2 * np.pi * weekday / 7)
    cols["weekday_cos"] = np.cos(2 * np.pi * weekday / 7)
    r = np.log(c).diff()
    for n in VOL:
        cols[f"realized_vol_{n}"] = np.sqrt((r**2).rolling(n).mean())
    for n in RSI:
        cols[f"rsi_{n}"] = ta.momentum.RSIIndicator(c, window=n).rsi() / 100
    for n in ATR:
        atr = ta.volatility.AverageTrueRange(h, l, c, window=n).average_true_range()
        atr[: n - 1] = np.nan  # ta writes zeros during the warm-up
        cols[f"atr_{n}"] = atr / c
    for n in BOLL:
        cols[f"bollinger_pb_{n}"] = ta.volatility.BollingerBands(c, window=n, window_dev=2).bollinger_pband()
    for n in STOCH:
        so = ta.momentum.StochasticOscillator(h, l, c, window=n, smooth_window=3)
        cols[f"stoch_k_{n}"] = so.stoch() / 100
        cols[f"stoch_d_{n}"] = so.stoch_signal() / 100
    for fast, slow, sign in MACD:
        m = ta.trend.MACD(c, window_slow=slow, window_fast=fast, window_sign=sign)
        tag = f"{fast}_{slow}_{sign}"
        cols[f"macd_{tag}"] = m.macd() / c
        cols[f"macd_signal_{tag}"] = m.macd_signal() / c
        cols[f"macd_hist_{tag}"] = m.macd_diff() / c
    for hz in HORIZONS:
        cols[f"target_h{hz}"] = np.log(c.shift(-hz) / c)
    out = pd.DataFrame(cols)
    out.insert(0, "ts", df["time"].astype("int64") // 10**9)
    return out


def scaler_and_metrics(table: pd.DataFrame) -> dict:
    feature_cols = [c for c in table.columns if c != "ts" and not c.startswith("target_")]
    complete = table.dropna(subset=feature_cols)
    train = complete[feature_cols].iloc[:200].to_numpy()
    scaler = StandardScaler().fit(train)
    actual = complete["target_h4"].dropna().to_numpy()[:300]
    # A fixed, deliberately imperfect prediction: a damped, lagged copy plus a bias.
    predicted = 0.5 * np.roll(actual, 1) + 1e-4
    return {
        "columns": feature_cols,
        "first_complete_row": int(complete.index[0]),
        "scaler_rows": 200,
        "scaler_mean": scaler.mean_.tolist(),
        "scaler_scale": scaler.scale_.tolist(),
        "metrics_actual": actual.tolist(),
        "metrics_predicted": predicted.tolist(),
        "mae": mean_absolute_error(actual, predicted),
        "rmse": float(np.sqrt(mean_squared_error(actual, predicted))),
        "r2": r2_score(actual, predicted),
        "directional_accuracy": float(np.mean(np.sign(actual[actual != 0]) == np.sign(predicted[actual != 0]))),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    table = features(load())
    table.to_csv(OUT / "features_oracle.csv", index=False, float_format="%.17g", na_rep="NaN")
    with open(OUT / "scaler_metrics_oracle.json", "w") as f:
        json.dump(scaler_and_metrics(table), f, indent=1)
        f.write("\n")
    print(f"wrote {len(table)} rows × {table.shape[1]} columns to {OUT}")


if __name__ == "__main__":
    main()
