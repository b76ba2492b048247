"""ControlNet sliders on AuraFlow, whose ControlNet exists only as SimpleTuner's own model class.

Our `AuraFlowControlNetModel` must load a folder SimpleTuner's class wrote with `save_pretrained`
(same config keys, parameter names and shapes) and its residuals must reach diffusers' unmodified
AuraFlow transformer where SimpleTuner's transformer adds them.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from sliderstudio.adapters.controlnet import load_control_image, load_controlnet
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.auraflow import tiny_auraflow_transformer
from sliderstudio.families.auraflow_controlnet import AuraFlowControlNetModel, auraflow_residuals
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from controlnet_checks import assert_trained_on_the_controlnet_only
from test_controlnet import PROMPT, controlnet_project

# SimpleTuner, simpletuner/helpers/models/auraflow/controlnet.py (AuraFlowControlNetModel.__init__'s
# register_to_config arguments, read at commits 1702e955 and f0cff735)
SIMPLETUNER_CONFIG_KEYS = {"sample_size", "patch_size", "in_channels", "num_mmdit_layers", "num_single_dit_layers",
                           "attention_head_dim", "num_attention_heads", "joint_attention_dim",
                           "caption_projection_dim", "out_channels", "pos_embed_max_size", "num_layers",
                           "extra_conditioning_channels"}
# the same file's modules (pos_embed, context_embedder, time_step_proj, the blocks, controlnet_blocks, the
# optional pos_embed_input, register_tokens), with the block and patch-embedding parameters of
# simpletuner/helpers/models/auraflow/transformer.py (AuraFlowPatchEmbed, AuraFlowJointTransformerBlock,
# AuraFlowSingleTransformerBlock, AuraFlowFeedForward at commit 2e018b58)
PATCH = ("proj.weight", "proj.bias", "pos_embed")
JOINT = ("norm1.linear.weight", "norm1_context.linear.weight", "attn.to_q.weight", "attn.to_k.weight",
         "attn.to_v.weight", "attn.add_q_proj.weight", "attn.add_k_proj.weight", "attn.add_v_proj.weight",
         "attn.to_out.0.weight", "attn.to_add_out.weight", "ff.linear_1.weight", "ff.linear_2.weight",
         "ff.out_projection.weight", "ff_context.linear_1.weight", "ff_context.linear_2.weight",
         "ff_context.out_projection.weight")
SINGLE = ("norm1.linear.weight", "attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight", "attn.to_out.0.weight",
          "ff.linear_1.weight", "ff.linear_2.weight", "ff.out_projection.weight")


def simpletuner_names(joint: int, single: int, extra: bool) -> set[str]:
    names = {f"pos_embed.{p}" for p in PATCH} | {"context_embedder.weight", "register_tokens"}
    names |= {f"time_step_proj.linear_{i}.{w}" for i in (1, 2) for w in ("weight", "bias")}
    names |= {f"joint_transformer_blocks.{i}.{p}" for i in range(joint) for p in JOINT}
    names |= {f"single_transformer_blocks.{i}.{p}" for i in range(single) for p in SINGLE}
    names |= {f"controlnet_blocks.{i}.{w}" for i in range(joint + single) for w in ("weight", "bias")}
    return names | ({f"pos_embed_input.{p}" for p in PATCH} if extra else set())


def randomise_zero_layers(controlnet: torch.nn.Module) -> None:
    """A fresh ControlNet's residual projections (and control input embedding) are zero; a trained one's are not."""
    torch.manual_seed(1)
    for name, p in controlnet.named_parameters():
        if name.startswith(("controlnet_blocks.", "pos_embed_input.")):
            torch.nn.init.normal_(p, std=0.2)


def strengthen_modulation(controlnet: torch.nn.Module) -> None:
    """The tiny model's AdaLN gates are ~0.1, which leaves its attention (the slider's targets) almost no say
    in the residuals; a trained ControlNet's blocks are not that quiet."""
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if ".norm1" in name:
                p.mul_(10)


@pytest.mark.parametrize("num_layers,extra,joint,single", [(None, 0, 2, 2), (3, 4, 1, 2), (2, 0, 1, 1)])
def test_auraflow_controlnet_has_simpletuners_config_and_parameter_layout(num_layers, extra, joint, single):
    transformer = tiny_auraflow_transformer()
    controlnet = AuraFlowControlNetModel.from_transformer(transformer, num_layers=num_layers,
                                                          num_extra_conditioning_channels=extra)
    assert set(controlnet.config) - {"_class_name", "_diffusers_version", "_use_default_values"} \
        == SIMPLETUNER_CONFIG_KEYS
    assert set(controlnet.state_dict()) == simpletuner_names(joint, single, bool(extra))
    shapes = {n: tuple(p.shape) for n, p in controlnet.state_dict().items()}
    assert shapes["controlnet_blocks.0.weight"] == (16, 16) and shapes["register_tokens"] == (1, 8, 16)
    if extra:  # the control input embedding reads latents + the extra channels, 2×2 patches
        assert shapes["pos_embed_input.proj.weight"] == (16, (4 + extra) * 4)
    # started from the transformer: its first blocks and embedders, zero residual projections
    source = transformer.state_dict()
    for name, value in controlnet.state_dict().items():
        if name.startswith(("controlnet_blocks.", "pos_embed_input.")):
            assert not value.any(), name
        else:
            assert torch.equal(value, source[name]), name


def simpletuner_folder(path, transformer, num_layers=None):
    """A folder as SimpleTuner's `save_pretrained` writes it, built by hand: its config keys, its tensor names."""
    controlnet = AuraFlowControlNetModel.from_transformer(transformer, num_layers=num_layers)
    randomise_zero_layers(controlnet)
    path.mkdir(parents=True)
    config = {k: controlnet.config[k] for k in SIMPLETUNER_CONFIG_KEYS}
    (path / "config.json").write_text(json.dumps({"_class_name": "AuraFlowControlNetModel",
                                                  "_diffusers_version": "0.35.0.dev0", **config}))
    tensors = {n: t.contiguous() for n, t in controlnet.state_dict().items()}
    save_file(tensors, str(path / "diffusion_pytorch_model.safetensors"))
    return tensors


def test_a_simpletuner_auraflow_controlnet_folder_loads_as_it_is(tmp_path):
    tensors = simpletuner_folder(tmp_path / "cn", tiny_auraflow_transformer(), num_layers=3)
    loaded = load_controlnet(get_family("auraflow"), tmp_path / "cn", torch.float32, "cpu")
    assert type(loaded).__name__ == "AuraFlowControlNetModel"
    assert len(loaded.joint_transformer_blocks) == 1 and len(loaded.single_transformer_blocks) == 2
    state = loaded.state_dict()
    assert set(state) == set(tensors) and all(torch.equal(state[n], t) for n, t in tensors.items())
    assert not any(p.requires_grad for p in loaded.parameters())


def reference_forward(transformer, x, text, t, samples):
    """SimpleTuner's AuraFlow transformer loop, written out: residual i // interval after block i (image tokens)."""
    total = len(transformer.joint_transformer_blocks) + len(transformer.single_transformer_blocks)
    interval = total // len(samples)
    h = transformer.pos_embed(x)
    temb = transformer.time_step_proj(transformer.time_step_embed(t))
    e = transformer.context_embedder(text)
    e = torch.cat([transformer.register_tokens.repeat(e.shape[0], 1, 1), e], dim=1)
    for i, block in enumerate(transformer.joint_transformer_blocks):
        e, h = block(hidden_states=h, encoder_hidden_states=e, temb=temb)
        h = h + samples[i // interval]
    joined = torch.cat([e, h], dim=1)
    for j, block in enumerate(transformer.single_transformer_blocks):
        joined = block(hidden_states=joined, temb=temb)
        i = len(transformer.joint_transformer_blocks) + j
        joined = joined + torch.cat([torch.zeros_like(e), samples[i // interval]], dim=1)
    h = transformer.proj_out(transformer.norm_out(joined[:, e.shape[1]:], temb))
    b, p, c = x.shape[0], transformer.config.patch_size, transformer.config.out_channels
    h = h.reshape(b, x.shape[2] // p, x.shape[3] // p, p, p, c)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(b, c, x.shape[2], x.shape[3])


@pytest.mark.parametrize("residuals", [4, 2, 1])
def test_residuals_go_after_the_blocks_simpletuners_transformer_adds_them_to(residuals):
    transformer = tiny_auraflow_transformer()
    g = torch.Generator().manual_seed(0)
    x, text, t = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, 32, generator=g), torch.tensor([0.2, 0.9])
    samples = [torch.randn(2, 16, 16, generator=g) for _ in range(residuals)]
    with torch.no_grad():
        plain = transformer(x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        with auraflow_residuals(transformer, samples):
            injected = transformer(x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        after = transformer(x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        expected = reference_forward(transformer, x, text, t, samples)
    assert torch.allclose(injected, expected, atol=1e-5) and not torch.allclose(injected, plain, atol=1e-3)
    assert torch.equal(after, plain)  # the hooks are gone once the call's context ends
    assert all(not b._forward_hooks for b in transformer.joint_transformer_blocks)


def test_a_controlnet_that_does_not_fit_the_transformer_is_refused(tmp_path, auraflow_model, capsys):
    from sliderstudio.cli import main

    transformer = tiny_auraflow_transformer()
    with pytest.raises(ConfigError, match="3 residual blocks does not fit a transformer with 4 blocks"):
        auraflow_residuals(transformer, [torch.zeros(1, 16, 16)] * 3)
    # from the CLI: exit 2 naming the key, before a step runs and with nothing written
    AuraFlowControlNetModel.from_transformer(transformer, num_layers=3).save_pretrained(tmp_path / "cn")
    root = controlnet_project(tmp_path / "p", auraflow_model, tmp_path / "cn",
                              config={"max_train_steps": 1, "model_family": "auraflow"})
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "controlnet_model_name_or_path" in err and "3 residual blocks does not fit" in err
    assert not (root / "output" / "pytorch_lora_weights.safetensors").exists()


def test_a_controlnet_with_extra_conditioning_channels_is_refused():
    from sliderstudio.families.auraflow import ControlledAuraFlow

    transformer = tiny_auraflow_transformer()
    controlnet = AuraFlowControlNetModel.from_transformer(transformer, num_extra_conditioning_channels=4)
    with pytest.raises(ConfigError, match="reads 4 \\+ 4 conditioning channels") as err:
        ControlledAuraFlow(transformer, controlnet)
    assert err.value.key == "controlnet_model_name_or_path"


@pytest.mark.parametrize("family", ["auraflow", "hidream"])
def test_residual_hooks_keep_gradients_exact_under_gradient_checkpointing(family):
    """The hooks are gone when backward recomputes a checkpointed block; the gradients must not notice."""
    def gradients(checkpointing):
        if family == "auraflow":
            from sliderstudio.families.auraflow import ControlledAuraFlow

            transformer = tiny_auraflow_transformer().requires_grad_(False)
            controlnet = AuraFlowControlNetModel.from_transformer(transformer, num_layers=2)
            wrapper, inputs = ControlledAuraFlow, dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g),
                                                       encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                                                       timestep=torch.tensor([0.3, 0.6]))
        else:
            from sliderstudio.families.hidream import ControlledHiDream
            from sliderstudio.families.hidream_controlnet import HiDreamControlNetModel

            transformer = tiny_hidream_transformer().requires_grad_(False)
            controlnet = HiDreamControlNetModel.from_transformer(transformer)
            wrapper, inputs = ControlledHiDream, hidream_inputs()
        randomise_zero_layers(controlnet)
        if checkpointing:
            transformer.enable_gradient_checkpointing()
            controlnet.enable_gradient_checkpointing()
        model = wrapper(transformer, controlnet)
        with model.conditioned_on(torch.randn(2, 4, 8, 8, generator=g)):
            out = model(**inputs, return_dict=False)[0]
        out.square().mean().backward()
        return out.detach(), [p.grad for p in controlnet.parameters() if p.grad is not None]

    g = torch.Generator().manual_seed(0)
    plain, plain_grads = gradients(False)
    g = torch.Generator().manual_seed(0)
    checkpointed, checkpointed_grads = gradients(True)
    assert torch.allclose(plain, checkpointed, atol=1e-6) and len(plain_grads) == len(checkpointed_grads) > 10
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_grads, checkpointed_grads))
    assert any(grad.abs().sum() > 0 for grad in plain_grads)


def use_simpletuner_dataloader_form(root):
    """SimpleTuner's ControlNet example: conditioning entries linked from the image entries by `conditioning_data`."""
    entries = json.loads((root / "multidatabackend.json").read_text())
    for entry in entries:
        folder = entry.pop("conditioning_data_dir")
        entry["conditioning_data"] = f"{entry['id']}-control"
    entries += [{"id": f"{e['id']}-control", "type": "local", "dataset_type": "conditioning",
                 "conditioning_type": "controlnet", "instance_data_dir": f"cond/{e['id']}"} for e in list(entries)]
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    return folder


@pytest.fixture(scope="module")
def auraflow_model(tmp_path_factory):
    return get_family("auraflow").build_tiny(tmp_path_factory.mktemp("aura") / "auraflow")


def test_auraflow_controlnet_slider_trains_on_the_controlnet_and_previews(tmp_path, auraflow_model):
    from sliderstudio.cli import main

    pipe = load_pipeline(get_family("auraflow"), str(auraflow_model))
    torch.manual_seed(0)
    controlnet = AuraFlowControlNetModel.from_transformer(pipe.transformer, num_layers=2)
    randomise_zero_layers(controlnet)
    strengthen_modulation(controlnet)
    controlnet.save_pretrained(tmp_path / "cn")
    assert json.loads((tmp_path / "cn" / "config.json").read_text())["_class_name"] == "AuraFlowControlNetModel"
    root = controlnet_project(tmp_path / "p", auraflow_model, tmp_path / "cn",
                              config={"max_train_steps": 2, "model_family": "auraflow"})
    use_simpletuner_dataloader_form(root)
    trainer = Trainer(load_project(root))
    path = trainer.run()
    assert_trained_on_the_controlnet_only(trainer.session, "auraflow", auraflow_model, path)
    assert list((root / "cache").rglob("control-latents/*.safetensors"))

    # preview from the CLI: needs the control image; with it, a grid of three renders
    grid = tmp_path / "grid.png"
    args = ["preview", "--model", str(auraflow_model), "--lora", str(path), "--prompt", PROMPT,
            "--strengths", "-1,0,1", "--steps", "2", "--guidance", "1", "--out", str(grid)]
    assert main(args) == 2 and not grid.exists()
    control = root / "cond" / "pos" / "img0.png"
    assert main(args + ["--control-image", str(control)]) == 0 and Image.open(grid).width == 3 * 64

    # ±1 differ from 0 and from each other; strength 0 is exactly the plain ControlNet pipeline's render
    renderer = PreviewRenderer(get_family("auraflow"), str(auraflow_model), path, control_image=control)
    images = [np.asarray(im) for im in renderer.render(PROMPT, 0, [0.0, 1.0, -1.0], steps=2, guidance=1.0,
                                                       size=64)]
    assert not np.array_equal(images[1], images[0]) and not np.array_equal(images[2], images[1])
    renderer.adapter.remove()
    reference = renderer._control_pipe(prompt=[PROMPT], control_image=[load_control_image(control, 64)],
                                       num_inference_steps=2, guidance_scale=1.0, height=64, width=64,
                                       generator=[torch.Generator().manual_seed(0)], output_type="pil").images
    assert np.array_equal(images[0], np.asarray(reference[0]))
    # and the ControlNet matters: without its residuals the render differs
    plain = pipe(prompt=[PROMPT], num_inference_steps=2, guidance_scale=1.0, height=64, width=64,
                 generator=[torch.Generator().manual_seed(0)], output_type="pil").images
    assert not np.array_equal(images[0], np.asarray(plain[0]))


# ---- HiDream ------------------------------------------------------------------------------------------------

# SimpleTuner, simpletuner/helpers/models/hidream/controlnet.py (HiDreamControlNetModel.__init__'s
# register_to_config arguments, read at commit d93abfee)
SIMPLETUNER_HIDREAM_CONFIG_KEYS = {"patch_size", "in_channels", "num_layers", "num_single_layers",
                                   "attention_head_dim", "num_attention_heads", "joint_attention_dim",
                                   "pooled_projection_dim", "guidance_embeds", "max_seq_length",
                                   "conditioning_embedding_channels", "axes_dims_rope"}
# the same file's from_transformer: x/t/p/pe embedders and both block lists are the transformer's modules,
# t5_embedder / llama_embedder its caption_projection[-1] / [0] (TextProjection: `linear`, no bias); its own
# parameters are controlnet_x_embedder and the per-block residual projections
HIDREAM_OWN = {"controlnet_x_embedder.weight", "controlnet_x_embedder.bias", "t5_embedder.linear.weight",
               "llama_embedder.linear.weight"}


def tiny_hidream_transformer(seed=0):
    from diffusers import HiDreamImageTransformer2DModel

    torch.manual_seed(seed)
    return HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
        caption_channels=[32, 32], text_emb_dim=32, num_routed_experts=4, num_activated_experts=2,
        axes_dims_rope=(8, 4, 4), max_resolution=(8, 8), llama_layers=[0, 1, 0, 1]).eval()


def hidream_inputs(batch=2):
    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(batch, 4, 8, 8, generator=g), timesteps=torch.tensor([300.0, 800.0][:batch]),
                encoder_hidden_states_t5=torch.randn(batch, 7, 32, generator=g),
                encoder_hidden_states_llama3=torch.randn(2, batch, 5, 32, generator=g),
                pooled_embeds=torch.randn(batch, 32, generator=g))


def test_hidream_controlnet_has_simpletuners_config_and_parameter_layout():
    from sliderstudio.families.hidream_controlnet import HiDreamControlNetModel

    transformer = tiny_hidream_transformer()
    controlnet = HiDreamControlNetModel.from_transformer(transformer, num_layers=1)
    assert set(controlnet.config) - {"_class_name", "_diffusers_version", "_use_default_values"} \
        == SIMPLETUNER_HIDREAM_CONFIG_KEYS
    source, state = transformer.state_dict(), controlnet.state_dict()
    shared = {n for n in source if n.startswith(("x_embedder.", "t_embedder.", "p_embedder.",
                                                 "single_stream_blocks.", "double_stream_blocks.0."))}
    residual = {f"controlnet_blocks.0.{w}" for w in ("weight", "bias")}
    residual |= {f"controlnet_single_blocks.{i}.{w}" for i in range(2) for w in ("weight", "bias")}
    assert set(state) == shared | HIDREAM_OWN | residual
    assert any(".block.attn1.to_q.weight" in n for n in state)    # HiDream's block wrapper kept
    assert all(torch.equal(state[n], source[n]) for n in shared)
    assert torch.equal(state["t5_embedder.linear.weight"], source["caption_projection.4.linear.weight"])
    assert torch.equal(state["llama_embedder.linear.weight"], source["caption_projection.0.linear.weight"])
    assert all(not state[n].any() for n in residual | {"controlnet_x_embedder.weight"})
    # SimpleTuner's blocks have HiDream's 4 routed / 2 activated experts: another count is refused
    from diffusers import HiDreamImageTransformer2DModel

    other = HiDreamImageTransformer2DModel(**{**dict(transformer.config), "num_routed_experts": 2,
                                              "num_activated_experts": 1})
    with pytest.raises(ConfigError, match="4 routed / 2 activated"):
        HiDreamControlNetModel.from_transformer(other)


def test_a_simpletuner_hidream_controlnet_folder_loads_as_it_is(tmp_path):
    from sliderstudio.families.hidream_controlnet import HiDreamControlNetModel

    controlnet = HiDreamControlNetModel.from_transformer(tiny_hidream_transformer())
    randomise_zero_layers(controlnet)
    (tmp_path / "cn").mkdir()
    config = {k: controlnet.config[k] for k in SIMPLETUNER_HIDREAM_CONFIG_KEYS}
    config["axes_dims_rope"] = list(config["axes_dims_rope"])
    (tmp_path / "cn" / "config.json").write_text(json.dumps({"_class_name": "HiDreamControlNetModel",
                                                             "_diffusers_version": "0.33.1", **config}))
    tensors = {n: t.contiguous() for n, t in controlnet.state_dict().items()}
    save_file(tensors, str(tmp_path / "cn" / "diffusion_pytorch_model.safetensors"))
    loaded = load_controlnet(get_family("hidream"), tmp_path / "cn", torch.float32, "cpu")
    state = loaded.state_dict()
    assert type(loaded).__name__ == "HiDreamControlNetModel"
    assert set(state) == set(tensors) and all(torch.equal(state[n], t) for n, t in tensors.items())


@pytest.mark.parametrize("blocks,residuals,expected", [(16, 5, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]),
                                                       (2, 1, [0, 0]), (2, 2, [0, 1]), (3, 2, [0, 0, 1])])
def test_hidream_residual_index_is_simpletuners_rule(blocks, residuals, expected):
    from sliderstudio.families.hidream_controlnet import residual_index

    # SimpleTuner: min(block // ceil(blocks / residuals), residuals - 1)
    assert [residual_index(i, blocks, residuals) for i in range(blocks)] == expected


def test_hidream_residuals_go_onto_the_image_tokens_after_each_block():
    from sliderstudio.families.hidream_controlnet import hidream_residuals

    transformer = tiny_hidream_transformer()
    g = torch.Generator().manual_seed(1)
    double = [torch.randn(2, 16, 32, generator=g)]                      # one residual for both double blocks
    single = [torch.randn(2, 16, 32, generator=g) for _ in range(2)]    # one per single block
    blocks = list(transformer.double_stream_blocks) + list(transformer.single_stream_blocks)
    calls = {}
    handles = [b.register_forward_pre_hook(lambda m, a, kw, i=i: calls.setdefault(i, (a, kw)), with_kwargs=True)
               for i, b in enumerate(blocks)]
    with torch.no_grad():
        plain = transformer(**hidream_inputs(), return_dict=False)[0]
        for h in handles:
            h.remove()
        with hidream_residuals(transformer, double, single):
            injected = transformer(**hidream_inputs(), return_dict=False)[0]
            edited = [b(*calls[i][0], **calls[i][1]) for i, b in enumerate(blocks)]
        after = transformer(**hidream_inputs(), return_dict=False)[0]
        unedited = [b(*calls[i][0], **calls[i][1]) for i, b in enumerate(blocks)]
    assert not torch.allclose(injected, plain, atol=1e-4) and torch.equal(after, plain)
    # double blocks return (image, text): the image gets the residual, the text nothing
    for i in (0, 1):
        assert torch.allclose(edited[i][0] - unedited[i][0], double[0], atol=1e-6)
        assert torch.equal(edited[i][1], unedited[i][1])
    # single blocks: image tokens first in the joined sequence; only they get residual i, in order
    for i, residual in zip((2, 3), single):
        assert torch.allclose(edited[i][:, :16] - unedited[i][:, :16], residual, atol=1e-6)
        assert torch.equal(edited[i][:, 16:], unedited[i][:, 16:])


def test_hidream_controlnet_slider_trains_on_the_controlnet_and_previews(tmp_path):
    from sliderstudio.families.hidream import build_tiny_hidream
    from sliderstudio.families.hidream_controlnet import HiDreamControlNetModel

    model = build_tiny_hidream(tmp_path / "hidream", experts=(4, 2))
    pipe = load_pipeline(get_family("hidream"), str(model))
    controlnet = HiDreamControlNetModel.from_transformer(pipe.transformer)
    randomise_zero_layers(controlnet)
    controlnet.save_pretrained(tmp_path / "cn")
    root = controlnet_project(tmp_path / "p", model, tmp_path / "cn",
                              config={"max_train_steps": 2, "model_family": "hidream"})
    trainer = Trainer(load_project(root))
    path = trainer.run()
    assert_trained_on_the_controlnet_only(trainer.session, "hidream", model, path)
    assert list((root / "cache").rglob("control-latents/*.safetensors"))

    control = root / "cond" / "pos" / "img0.png"
    from sliderstudio.cli import main

    grid = tmp_path / "grid.png"
    assert main(["preview", "--model", str(model), "--lora", str(path), "--prompt", PROMPT, "--strengths", "-1,0,1",
                 "--steps", "2", "--guidance", "1", "--size", "64", "--control-image", str(control),
                 "--out", str(grid)]) == 0
    assert Image.open(grid).width == 3 * 64
    renderer = PreviewRenderer(get_family("hidream"), str(model), path, control_image=control)
    images = [np.asarray(im) for im in renderer.render(PROMPT, 0, [0.0, 1.0, -1.0], steps=2, guidance=1.0,
                                                       size=64)]
    assert images[0].shape == (64, 64, 3)
    assert not np.array_equal(images[1], images[0]) and not np.array_equal(images[2], images[1])
    # strength 0 on its own (the mixture-of-experts sums differ in the last bit between batch sizes)
    at_zero = np.asarray(renderer.render(PROMPT, 0, [0.0], steps=2, guidance=1.0, size=64)[0])
    renderer.adapter.remove()
    from sliderstudio.families.hidream import MAX_SEQUENCE_LENGTH, render_area

    with render_area(renderer._control_pipe, 64):
        reference = renderer._control_pipe(prompt=[PROMPT], control_image=[load_control_image(control, 64)],
                                           num_inference_steps=2, guidance_scale=1.0, height=64, width=64,
                                           max_sequence_length=MAX_SEQUENCE_LENGTH,
                                           generator=[torch.Generator().manual_seed(0)], output_type="pil").images
    assert np.array_equal(at_zero, np.asarray(reference[0]))
