"""save_pretrained / from_pretrained: identical outputs, Auto classes, and remote code in a fresh process."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from conftest import tiny_model
from modeling_anira import AniraForCausalLM, AniraModel


@pytest.mark.parametrize("mode", ["fixed", "early", "online"])
def test_save_and_load_give_identical_outputs(tmp_path, mode):
    model = tiny_model(depth_mode=mode, injection="concat")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).eval()
    loaded.model.recurrence = "dense"
    assert isinstance(loaded, AniraForCausalLM)
    ids = torch.randint(3, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    a, b = model(ids), loaded(ids)
    # Equal to rounding: the loaded weights' memory layout may change a matmul's summation order (1 ulp).
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-12, atol=1e-14)
    assert torch.equal(a.depths, b.depths)


def test_auto_model_builds_the_base_model():
    model = AutoModel.from_config(AutoConfig.for_model("anira", hidden_size=32, num_attention_heads=4,
                                                       intermediate_size=64, vocab_size=40))
    assert isinstance(model, AniraModel)


def test_saved_folder_loads_with_remote_code_in_a_process_that_never_imported_the_package(tmp_path):
    model = tiny_model(depth_mode="online")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"].endswith("AniraForCausalLM")
    assert (tmp_path / "modeling_anira.py").exists() and (tmp_path / "configuration_anira.py").exists()
    ids = [[5, 9, 13, 7, 21]]
    expected = model(torch.tensor(ids))
    script = textwrap.dedent(
        f"""
        import json, sys, torch
        sys.path = [p for p in sys.path if p not in ("", ".")]
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True, dtype=torch.float64).eval()
        model.model.recurrence = "dense"
        out = model(torch.tensor({ids}))
        assert "modeling_anira" not in sys.modules, "the installed package must not be needed"
        print(json.dumps({{"module": type(model).__module__, "logits": out.logits.tolist(), "depths": out.depths.tolist()}}))
        """
    )
    # Run from an empty folder so neither the repository nor its package is importable by path.
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path.parent, capture_output=True, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path.parent),
                                 "PYTHONNOUSERSITE": "1", "HF_MODULES_CACHE": str(tmp_path.parent / "modules")})
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules")
    torch.testing.assert_close(torch.tensor(remote["logits"], dtype=torch.float64), expected.logits)
    assert remote["depths"] == expected.depths.tolist()


def test_loading_a_checkpoint_of_another_model_type_is_a_clear_error(tmp_path):
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                 num_hidden_layers=1, vocab_size=40)).save_pretrained(tmp_path)
    with pytest.raises((ValueError, TypeError), match="(?i)llama|anira"):
        AniraForCausalLM.from_pretrained(tmp_path)


def test_an_early_checkpoint_loads_only_with_its_depth_range(tmp_path):
    tiny_model(depth_mode="early").save_pretrained(tmp_path)
    for override in ({"min_depth": 2}, {"max_depth": 6}):
        with pytest.raises(ValueError, match=f"early-mode.*{next(iter(override))}="):
            AutoModelForCausalLM.from_pretrained(tmp_path, **override)
    config = AutoConfig.from_pretrained(tmp_path, min_depth=3)
    with pytest.raises(ValueError, match="min_depth=3"):
        AniraForCausalLM.from_pretrained(tmp_path, config=config)
    with pytest.raises(ValueError, match="min_depth=3"):  # ignore_mismatched_sizes would start a random router
        AniraForCausalLM.from_pretrained(tmp_path, min_depth=3, ignore_mismatched_sizes=True)
    assert AutoModelForCausalLM.from_pretrained(tmp_path, depth_mode="fixed").config.depth_mode == "fixed"


def test_a_controller_the_checkpoint_lacks_is_a_clear_error_and_depth_budgets_stay_free(tmp_path):
    tiny_model(depth_mode="fixed").save_pretrained(tmp_path / "fixed")
    for mode, head in (("online", "halting head"), ("early", "router")):
        with pytest.raises(ValueError, match=f"depth_mode='fixed' checkpoint: it holds no {mode}-mode {head}"):
            AutoModelForCausalLM.from_pretrained(tmp_path / "fixed", depth_mode=mode)
    online = tiny_model(depth_mode="online")
    online.save_pretrained(tmp_path / "online")
    longer = AutoModelForCausalLM.from_pretrained(tmp_path / "online", max_depth=online.config.max_depth + 2,
                                                  min_depth=2, halting_threshold=0.9)
    assert (longer.config.max_depth, longer.config.min_depth, longer.config.halting_threshold) == (
        online.config.max_depth + 2, 2, 0.9)
    torch.testing.assert_close(longer.model.depth_controller.halting_head.weight,
                               online.model.depth_controller.halting_head.weight.to(longer.dtype))


ROOT = Path(__file__).resolve().parents[1]
TRAINED = [ROOT / "hub_configs" / f"anira-{variant}-{family}" for family in ("depo", "brevo") for variant in ("e", "o", "fixed")]
AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoTokenizer")


@pytest.fixture
def saved_folder(tmp_path):
    from anira_tasks import load_tokenizer

    folder = tmp_path / "saved"
    tokenizer = load_tokenizer("depo")
    tiny_model(depth_mode="online", vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_saved_and_trained_folders_name_every_auto_model_class(saved_folder):
    for folder in [saved_folder, *TRAINED]:
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert auto_map == {"AutoConfig": "configuration_anira.AniraConfig", "AutoModel": "modeling_anira.AniraModel",
                            "AutoModelForCausalLM": "modeling_anira.AniraForCausalLM"}, folder.name


def test_every_auto_class_loads_saved_and_trained_folders_with_the_package_imported(saved_folder):
    from transformers import AutoTokenizer

    for folder in [saved_folder, *TRAINED]:
        for remote in (False, True):
            kwargs = {"trust_remote_code": True} if remote else {}
            config = AutoConfig.from_pretrained(folder, **kwargs)
            base = AutoModel.from_pretrained(folder, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            assert (type(config).__name__, type(base).__name__, type(lm).__name__) == (
                "AniraConfig", "AniraModel", "AniraForCausalLM"), folder.name
            assert len(tokenizer) == config.vocab_size, folder.name


def test_every_auto_class_loads_saved_and_trained_folders_in_a_process_that_never_imported_the_package(saved_folder):
    folders = [str(folder) for folder in [saved_folder, *TRAINED]]
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path = [p for p in sys.path if p not in ("", ".")]
        import transformers
        loaded = {{}}
        for folder in {folders!r}:
            for name in {AUTO_CLASSES!r}:
                obj = getattr(transformers, name).from_pretrained(folder, trust_remote_code=True)
                loaded[folder + " " + name] = [type(obj).__name__, type(obj).__module__, len(obj) if name == "AutoTokenizer" else None]
        assert "modeling_anira" not in sys.modules, "the installed package must not be needed"
        print(json.dumps(loaded))
        """
    )
    home = saved_folder.parent
    result = subprocess.run([sys.executable, "-c", script], cwd=home, capture_output=True, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(home),
                                 "PYTHONNOUSERSITE": "1", "HF_MODULES_CACHE": str(home / "modules")})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {"AutoConfig": "AniraConfig", "AutoModel": "AniraModel", "AutoModelForCausalLM": "AniraForCausalLM"}
    for folder in folders:
        vocab_size = json.loads((Path(folder) / "config.json").read_text())["vocab_size"]
        for name, class_name in expected.items():
            got, module, _ = loaded[f"{folder} {name}"]
            assert got == class_name and module.startswith("transformers_modules"), (folder, name, got, module)
        assert loaded[f"{folder} AutoTokenizer"][2] == vocab_size, folder


@pytest.mark.parametrize("mode", ["early", "online"])
def test_an_adaptive_checkpoint_loads_as_fixed_with_every_other_weight_and_no_unexpected_keys(tmp_path, mode):
    model = tiny_model(depth_mode=mode)
    model.save_pretrained(tmp_path)
    fixed, info = AutoModelForCausalLM.from_pretrained(tmp_path, depth_mode="fixed", output_loading_info=True)
    assert fixed.model.depth_controller is None or not any(True for _ in fixed.model.depth_controller.parameters())
    assert not info["unexpected_keys"]  # the controller's weights are left out by request, not reported
    assert not info["missing_keys"] and not info["mismatched_keys"]
    kept = {name for name, _ in fixed.named_parameters()}
    saved = {name for name, _ in model.named_parameters() if "depth_controller" not in name}
    assert kept == saved
    for name, weight in fixed.named_parameters():
        torch.testing.assert_close(weight, model.get_parameter(name))
