#!/usr/bin/env python3
"""Writes the CSV files the end-to-end import tests read, in the layouts real sources use.

The bars are the first 150 of the shipped sample. The pandas file is written by pandas itself
(`DataFrame.to_csv` with a DatetimeIndex: empty first header cell, `YYYY-MM-DD HH:MM:SS`); the
others follow the published layouts of MetaTrader 4 (History Center export), MetaTrader 5
(tab-separated with <DATE> <TIME> headers), HistData ASCII and Dukascopy.

    /tmp/oracle/bin/python tests/oracle/gen_csv_fixtures.py
"""

import pathlib

import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/csv"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(ROOT / "shared/core/data/EURUSD_1h_2017.csv", nrows=150)
    df.index = pd.to_datetime(df.pop("Time"), format="%d.%m.%Y %H:%M:%S.%f")
    df.index.name = None
    df["Volume"] = (df["Volume"] / 1e6).round(2)
    df.to_csv(OUT / "pandas_to_csv.csv")

    t = df.index
    with open(OUT / "mt4_history_center.csv", "w", newline="") as f:
        for ts, r in zip(t, df.itertuples()):
            f.write(f"{ts:%Y.%m.%d},{ts:%H:%M},{r.Open:.5f},{r.High:.5f},{r.Low:.5f},{r.Close:.5f},{int(r.Volume)}\r\n")
    with open(OUT / "mt5_export.csv", "w", newline="") as f:
        f.write("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n")
        for ts, r in zip(t, df.itertuples()):
            f.write(f"{ts:%Y.%m.%d}\t{ts:%H:%M:%S}\t{r.Open:.5f}\t{r.High:.5f}\t{r.Low:.5f}\t{r.Close:.5f}\t{int(r.Volume)}\t0\t8\n")
    with open(OUT / "histdata_ascii.csv", "w", newline="") as f:
        for ts, r in zip(t, df.itertuples()):
            f.write(f"{ts:%Y%m%d %H%M%S};{r.Open:.6f};{r.High:.6f};{r.Low:.6f};{r.Close:.6f};0\n")
    with open(OUT / "dukascopy.csv", "w", newline="") as f:
        f.write("Gmt time,Open,High,Low,Close,Volume\n")
        for ts, r in zip(t, df.itertuples()):
            f.write(f"{ts:%d.%m.%Y %H:%M:%S}.000,{r.Open:.5f},{r.High:.5f},{r.Low:.5f},{r.Close:.5f},{r.Volume:.2f}\n")
    with open(OUT / "generic_epoch_ms.csv", "w", newline="") as f:
        f.write("time,open,high,low,close,volume\n")
        for ts, r in zip(t, df.itertuples()):
            f.write(f"{int(ts.timestamp() * 1000)},{r.Open},{r.High},{r.Low},{r.Close},{r.Volume}\n")
    print(f"wrote {len(df)} bars in 6 layouts to {OUT}")


if __name__ == "__main__":
    main()
