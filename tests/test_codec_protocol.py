"""The codec contract is a type: the shipped codecs satisfy it, and a class that does not is refused
with the members it lacks."""

import pytest

from envs.minigrid import MiniGridCodec, MiniGridMapCodec
from worldsim.codecs import Codec, EgocentricCodec, codec_from_config, missing_members, register_codec, registered_codecs


def test_the_minigrid_codecs_satisfy_the_contract():
    egocentric, world_map = MiniGridCodec(7), MiniGridMapCodec(13, 13)
    assert isinstance(egocentric, Codec) and isinstance(egocentric, EgocentricCodec)
    assert missing_members(egocentric, EgocentricCodec) == []
    # the map view is a codec, but not one a dream env can use: the agent moves over the map
    assert isinstance(world_map, Codec) and not isinstance(world_map, EgocentricCodec)
    assert missing_members(world_map, EgocentricCodec) == ["agent_cell"]
    for codec in (egocentric, world_map):
        assert codec_from_config(codec.config).config == codec.config


class HalfACodec:
    version, vocab_size, unseen_token = "half-v1", 4, 0
    frame_shape = (2, 2)
    config = {"version": "half-v1"}

    @classmethod
    def from_config(cls, config):
        return cls()


def test_a_class_missing_part_of_the_contract_is_refused(monkeypatch):
    import sys
    import types

    module = types.ModuleType("half_codec_for_test")
    module.HalfACodec = HalfACodec
    monkeypatch.setitem(sys.modules, "half_codec_for_test", module)
    register_codec("half-v1", "half_codec_for_test:HalfACodec")
    try:
        with pytest.raises(TypeError, match=r"lacks \['decode_batch', 'encode_episode', 'legal_mask', 'render', "
                                            r"'world_cells'\]"):
            codec_from_config({"version": "half-v1"})
    finally:
        from worldsim import codecs

        codecs._REGISTRY.pop("half-v1", None)
    assert "half-v1" not in registered_codecs()


def test_the_image_codec_satisfies_the_contract_and_is_rebuilt_from_its_files(tmp_path):
    from envs.images.codec import ImageCodec
    from envs.images.tokenizer import FrameTokenizer, TokenizerConfig
    from worldsim.codecs import PixelCodec, is_dream_codec

    FrameTokenizer(TokenizerConfig(image_shape=(16, 16, 3), patch=4, levels=(3, 3), width=4, blocks=0)).save(
        tmp_path / "tokenizer")
    codec = ImageCodec.from_tokenizer_folder(tmp_path / "tokenizer")
    assert isinstance(codec, Codec) and missing_members(codec) == []
    assert isinstance(codec, PixelCodec) and is_dream_codec(codec)     # a frame is the observation, an image
    assert codec_from_config(codec.config, files=tmp_path).config == codec.config
    assert codec.encode_episode(codec.decode_batch([[[0] * 4] * 4])[0]).shape == (1, 4, 4)
