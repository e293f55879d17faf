import gzip

import numpy as np
import pandas as pd
import pytest

from dforce.timeseries.data import (
    EXCHANGE_RATE,
    EXCHANGE_RATE_ENV,
    Scaler,
    calendar_features,
    find_exchange_rate,
    from_dataframe,
    load_exchange_rate,
    load_pedestrian,
    load_tourism,
    load_vic_elec,
    read_csv,
    rolling_windows,
)


def _published_layout(folder):
    """A file laid out as the published exchange_rate.txt.gz: 7588 rows of 8 comma-separated rates."""
    values = np.round(np.random.default_rng(0).uniform(0.5, 2.0, (7588, 8)), 6)
    path = folder / "exchange_rate.txt.gz"
    path.write_bytes(gzip.compress("\n".join(",".join(f"{v:.6f}" for v in row) for row in values).encode()))
    return path, values


def test_missing_exchange_rate_error_names_file_variable_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("DFORCE_EXCHANGE_RATE", str(tmp_path / "nowhere.gz"))
    with pytest.raises(FileNotFoundError) as err:
        load_exchange_rate()
    msg = str(err.value)
    assert "exchange_rate.txt.gz" in msg and "DFORCE_EXCHANGE_RATE" in msg and "laiguokun/multivariate-time-series-data" in msg


def test_exchange_rate_protocol(tmp_path):
    path, values = _published_layout(tmp_path)
    f = load_exchange_rate(path, verify=False)
    assert f.values.shape == (7588, 8) and f.freq == "B"
    np.testing.assert_array_equal(f.values, values)
    assert str(f.index[0].date()) == "1990-01-01"
    wins = rolling_windows(f, EXCHANGE_RATE)
    assert [len(h) for h, _ in wins] == [6071, 6101, 6131, 6161, 6191]
    assert all(len(fu) == 30 for _, fu in wins)
    np.testing.assert_array_equal(wins[4][1].values, f.values[6191:6221])
    assert EXCHANGE_RATE.context_length == 30


def test_exchange_rate_user_path_env_and_errors(tmp_path, monkeypatch):
    path, _ = _published_layout(tmp_path)
    assert load_exchange_rate(tmp_path, verify=False).values.shape == (7588, 8)  # a folder
    with pytest.raises(ValueError, match="sha256"):  # not the published bytes
        load_exchange_rate(tmp_path)
    monkeypatch.setenv("DFORCE_EXCHANGE_RATE", str(path))
    assert load_exchange_rate(verify=False).values.shape == (7588, 8)
    monkeypatch.setenv("DFORCE_EXCHANGE_RATE", str(tmp_path / "nowhere.gz"))
    with pytest.raises(FileNotFoundError, match="DFORCE_EXCHANGE_RATE"):
        load_exchange_rate()
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"1,2,3,4,5,6,7,8\n" * 3))
    with pytest.raises(ValueError, match="sha256"):
        load_exchange_rate(bad)
    assert load_exchange_rate(bad, verify=False).values.shape == (3, 8)


def test_the_published_exchange_rate_file_passes_its_checksum():
    """The one check that needs the real file (not in the repository); without it, the error says how to get it."""
    try:
        find_exchange_rate()
    except FileNotFoundError as err:
        assert EXCHANGE_RATE_ENV in str(err) and "shared/data/" in str(err)
        return
    f = load_exchange_rate()  # verifies the sha256 of the published file
    assert f.values.shape == (7588, 8) and np.isfinite(f.values).all() and (f.values > 0).all()


def test_wide_frame_with_gaps_becomes_nan_not_imputed(tmp_path):
    idx = pd.date_range("2020-01-01", periods=10, freq="D").delete([1, 2])
    df = pd.DataFrame({"date": idx, "a": np.arange(8.0), "b": np.arange(8.0) * 2, "temp": np.ones(8)})
    with pytest.raises(ValueError, match="covariates contain NaN"):
        from_dataframe(df, time_col="date", covariate_cols=["temp"])  # a covariate with gaps must be filled by the user
    f = from_dataframe(df.drop(columns="temp"), time_col="date")
    assert f.values.shape == (10, 2) and f.freq == "D" and f.columns == ["a", "b"]
    assert np.isnan(f.values[1:3]).all() and not np.isnan(f.values[[0, 3, 4, 5]]).any()
    df.drop(columns="temp").to_csv(tmp_path / "x.csv", index=False)
    g = read_csv(tmp_path / "x.csv")
    np.testing.assert_array_equal(np.isnan(g.values), np.isnan(f.values))


def test_long_frame_and_errors():
    t = pd.date_range("2021-01-01", periods=4, freq="h")
    df = pd.DataFrame({"time": list(t) * 2, "id": ["x"] * 4 + ["y"] * 4, "v": np.arange(8.0), "c": np.arange(8.0)})
    df = df.drop(index=5)  # y misses its second hour
    f = from_dataframe(df, time_col="time", id_col="id", value_col="v", covariate_cols=[])
    assert f.columns == ["x", "y"] and np.isnan(f.values[1, 1]) and f.values[3, 1] == 7
    with pytest.raises(ValueError, match="both id_col and value_col"):
        from_dataframe(df, time_col="time", id_col="id")
    with pytest.raises(ValueError, match="time column 'when'"):
        from_dataframe(df, time_col="when")


def test_package_datasets():
    v = load_vic_elec()
    assert v.values.shape == (52608, 1) and v.covariate_names == ["temperature", "holiday"] and v.freq == "30min"
    assert v.index[0].hour == 23  # 2011-12-31 13:00 UTC = 23:00 in UTC+10
    t = load_tourism()
    assert t.values.shape == (80, 304) and not np.isnan(t.values).any()
    p = load_pedestrian()
    assert p.num_series == 4 and p.freq == "h" and np.isnan(p.values).any()


def test_scaler_and_calendar():
    rng = np.random.default_rng(0)
    v = rng.normal(5, 2, size=(100, 3))
    s = Scaler("standard").fit(v)
    np.testing.assert_allclose(s.inverse(s.transform(v)), v)
    np.testing.assert_allclose(s.transform(v).std(0), 1, rtol=1e-9)
    a = Scaler("anchor").fit(np.cumsum(v, 0), lag=1)
    np.testing.assert_allclose(a.scale, v[1:].std(0), rtol=1e-9)
    feats, names = calendar_features(pd.date_range("2020-01-01", periods=48, freq="30min"), "30min")
    assert names[:2] == ["cos_day", "sin_day"] and feats.shape == (48, 6)
    np.testing.assert_allclose(feats[:, 0] ** 2 + feats[:, 1] ** 2, 1)
