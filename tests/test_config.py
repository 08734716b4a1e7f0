import pytest

from arc25.config import Config, ConfigError, config_from_dict, load_config


def test_defaults_are_kaggle():
    config = Config()
    assert config.run.time_limit_s == 12 * 3600
    assert config.sampling.n_per_prompt == 8 and config.lora.use_rslora


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('seed = 3\n[search]\nmax_epochs = 2\n[lora]\ntarget_modules = ["q_proj"]\n')
    config = load_config(path, ["search.max_epochs=5", "augment.enabled=false", "lora.target_modules=q_proj,v_proj"])
    assert config.seed == 3 and config.search.max_epochs == 5
    assert config.augment.enabled is False
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("text,message", [
    ("[search]\nmax_epoch = 2\n", "unknown key 'max_epoch'"),
    ("[search]\nmax_epochs = 'x'\n", "search.max_epochs: expected int"),
    ("[search]\nmax_epochs = 2.5\n", "expected an integer"),
    ("seed = \n", "invalid TOML"),
    ("[run]\ngather_s = 3.0\n", "key 'gather_s' was removed: the scheduler has one mode"),  # issue 20
])
def test_bad_toml_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_bad_override():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["search.max_epochs"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["nope.x=1"])


def test_toml_round_trip_and_cli(tmp_path):
    from arc25.config import config_to_toml
    from helpers import run_cli

    config = load_config(None, ["search.max_epochs=3", "model.path=/models/barc \"v1\"", "lora.target_modules=q_proj"])
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config
    result = run_cli("config", "--set", "run.task_order=shortest_first")
    assert result.returncode == 0 and 'task_order = "shortest_first"' in result.stdout
    assert load_config(None, ["run.task_order=shortest_first"]) == load_config(_write(tmp_path, result.stdout))
    bad = run_cli("config", "--set", "run.nope=1")
    assert bad.returncode == 2 and "unknown key 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def _write(tmp_path, text):
    path = tmp_path / "printed.toml"
    path.write_text(text)
    return path
