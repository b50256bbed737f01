import pytest
import yaml

from pipelines.config import ConfigError, load_config, parse_source_flags

BASE = {"release": "v1", "sources": [{"uri": "/raw", "domain": "phone"}]}


def _write(tmp_path, data):
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_resolved_config(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    resolved = config.resolved()
    assert resolved["model"]["name"] == "base" and resolved["filter"]["min_avg_logprob"] == -1.0
    assert resolved["splits"] == {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_the_shipped_confidence_is_on_for_the_model_it_was_fitted_on_only(tmp_path):
    from pipelines.config import BuildConfig, FilterConfig
    from pipelines.asr import default_beam_size
    from pipelines.shipped_confidence import BEAM_SIZE, MODEL, MODEL_NAME, THRESHOLD

    assert (MODEL_NAME, BEAM_SIZE) == ("base", 5)
    config = load_config(_write(tmp_path, BASE))
    assert config.model.beam_size is None and default_beam_size(multilingual=True) == BEAM_SIZE, \
        "fitted on the labels a default build decodes"
    assert default_beam_size(multilingual=False) == 1, "an English-only model decodes greedily by default"
    assert load_config(_write(tmp_path, {**BASE, "model": {"beam_size": 5}})).filter.min_confidence == THRESHOLD
    shipped = config.filter
    assert shipped.min_confidence == THRESHOLD and shipped.confidence_model == MODEL
    greedy = load_config(_write(tmp_path, {**BASE, "model": {"beam_size": 1}}))
    assert greedy.filter.min_confidence == 0.0, "off for greedy labels: their signals are not the ones it was fitted on"
    assert BuildConfig(**BASE, model=greedy.model).filter.min_confidence == 0.0
    tiny = load_config(_write(tmp_path, {**BASE, "model": {"name": "tiny.en"}, "filter": {"min_avg_logprob": -0.5}}))
    assert tiny.filter.min_confidence == 0.0 and tiny.filter.min_avg_logprob == -0.5, "off for tiny.en's labels"
    chosen = load_config(_write(tmp_path, {**BASE, "model": {"name": "tiny.en"}, "filter": {"min_confidence": 0.5}}))
    assert chosen.filter.min_confidence == 0.5, "a threshold the config sets is kept"
    built = BuildConfig(release="v1", sources=BASE["sources"], model={"name": "tiny.en"},
                        filter=FilterConfig(max_seconds=12.0))
    assert built.filter.min_confidence == 0.0 and built.filter.max_seconds == 12.0
    assert BuildConfig(**BASE, filter=FilterConfig(min_confidence=0.7)).filter.min_confidence == 0.7


@pytest.mark.parametrize("data, message", [
    ({**BASE, "thresholds": {}}, "thresholds: unknown key"),
    ({**BASE, "filter": {"min_avg_logprobb": -1}}, "filter.min_avg_logprobb: unknown key"),
    ({**BASE, "filter": {"max_no_speech_prob": 1.5}}, "filter.max_no_speech_prob"),
    ({**BASE, "sources": []}, "sources"),
    ({**BASE, "sources": [{"uri": "/x", "domain": "a/b"}]}, "invalid domain name"),
    ({**BASE, "release": "../up"}, "invalid release name"),
    ({**BASE, "splits": {"train": 0.5, "test": 0.2}}, "sum to 1"),
    ({**BASE, "segment": {"min_seconds": 10, "max_seconds": 5}}, "min_seconds"),
])
def test_bad_configs_name_the_field(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, data))


def test_flags_override_the_file(tmp_path):
    config = load_config(_write(tmp_path, BASE), release="v2", device="cpu", model_name="/models/x",
                         sources=parse_source_flags(["radio=s3://b/raw"]))
    assert config.release == "v2" and config.model.device == "cpu" and config.model.name == "/models/x"
    assert [(s.domain, s.uri) for s in config.sources] == [("radio", "s3://b/raw")]
    with pytest.raises(ConfigError, match="DOMAIN=URI"):
        parse_source_flags(["nodomain"])


def test_label_key_follows_what_changes_labels(tmp_path):
    base = load_config(_write(tmp_path, BASE))
    assert base.label_key() == load_config(_write(tmp_path, BASE), device="cpu").label_key()
    assert base.label_key() != load_config(_write(tmp_path, {**BASE, "model": {"beam_size": 1}})).label_key()
    assert base.label_key() != load_config(_write(tmp_path, {**BASE, "segment": {"max_seconds": 20}})).label_key()
    assert base.label_key() == load_config(_write(tmp_path, {**BASE, "filter": {"min_avg_logprob": -0.5}})).label_key()


def test_group_pattern_needs_a_named_group(tmp_path):
    ok = {**BASE, "sources": [{"uri": "/raw", "domain": "digits", "group_pattern": r"^\d+_(?P<group>[a-z]+)_"}]}
    assert load_config(_write(tmp_path, ok)).sources[0].group_pattern
    bad = {**BASE, "sources": [{"uri": "/raw", "domain": "digits", "group_pattern": r"^\d+_([a-z]+)_"}]}
    with pytest.raises(ConfigError, match="named group"):
        load_config(_write(tmp_path, bad))


def test_split_group_follows_the_declared_pattern():
    from dataclasses import replace

    from corpus.schema import Recording
    from pipelines.decide import split_group

    patterns = {("file:///raw", "digits"): r"^\d+_(?P<group>[a-z]+)_"}
    rec = Recording(file_key="f", source_uri="file:///raw", domain="digits", key="7_george_3.wav", uri="u",
                    recording_id="abc")
    assert split_group(rec, patterns) == "file:///raw#george"
    assert split_group(replace(rec, key="notes.wav"), patterns) == "abc"
    assert split_group(replace(rec, domain="other"), patterns) == "abc"


def test_placement_resources_are_custom_positive_and_declared_by_a_local_cluster():
    from pipelines.config import ConfigError, load_config

    base = {"release": "r", "sources": [{"uri": "/x", "domain": "d"}]}
    config = load_config(None, **base, resources={"label_resources": {"asr": 1}, "cpu_resources": {"cpu_pool": 0.5}})
    assert config.resources.label_resources == {"asr": 1} and config.resources.cpu_resources == {"cpu_pool": 0.5}
    assert set(config.resources.local_resources()) == {"asr", "cpu_pool"}
    assert load_config(None, **base).resources.local_resources() == {}
    for bad, words in (({"label_resources": {"GPU": 1}}, "not a custom resource"),
                       ({"cpu_resources": {"cpu_pool": 0}}, "positive amount"),
                       ({"cpu_resources": {"node:127.0.0.1": 1}}, "not a custom resource")):
        with pytest.raises(ConfigError, match=words):
            load_config(None, **base, resources=bad)


def test_a_release_saved_before_a_setting_existed_keeps_its_old_behaviour():
    from pipelines.config import FilterConfig
    from pipelines.refilter import resolve_thresholds

    now = FilterConfig().model_dump()
    older = {k: v for k, v in now.items() if k not in ("foreign_max_word_prob", "min_confidence")}
    old = FilterConfig.of_release(older)
    assert old.foreign_max_word_prob == 1.0 and old.min_confidence == 0.0  # what the code did before them
    assert FilterConfig.of_release(now) == FilterConfig()  # a current release: its own values
    default, per_domain = resolve_thresholds(older, {"min_avg_logprob": -0.5}, {"phone": {"min_seconds": 2.0}},
                                             {"phone"})
    assert (default.foreign_max_word_prob, default.min_confidence, default.min_avg_logprob) == (1.0, 0.0, -0.5)
    assert per_domain["phone"].foreign_max_word_prob == 1.0 and per_domain["phone"].min_seconds == 2.0
