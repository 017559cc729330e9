"""MES preset parsing (JSON, XML, UTF-16, lenient forms) and validation messages."""

from __future__ import annotations

import codecs
import json
from fractions import Fraction

import pytest

from openams.media.errors import PresetError
from openams.media.presets import (
    AACAudio,
    CopyAudio,
    Dimension,
    H264Video,
    ImageCodec,
    TimeSpec,
    load_preset,
    parse_preset,
    parse_time,
    preset_to_dict,
    validate,
)

NS = "https://www.windowsazure.com/media/encoding/Preset/2014/03"

# A preset in the documented JSON shape, written the way people send it: numbers and booleans in
# quotes, keys in odd case, a trailing comma, and Type last.
LENIENT_JSON = """
{
  "version": 1.0,
  "Sources": [ { "StartTime": "00:00:01", "Duration": "00:00:02.5" } ],
  "Codecs": [
    {
      "KeyFrameInterval": "00:00:02",
      "sceneChangeDetection": "false",
      "StretchMode": "autofit",
      "H264Layers": [
        { "Profile": "High", "Level": "4.0", "Bitrate": "1200", "MaxBitrate": 1500,
          "BufferWindow": "00:00:03", "Width": "640", "Height": 360, "BFrames": "2", "ReferenceFrames": 4,
          "EntropyMode": "cavlc",
          "AdaptiveBFrame": "TRUE", "FrameRate": "30000/1001", "Slices": "0", "Type": "H264Layer", },
        { "Width": "50%", "Height": "50%", "Bitrate": 600, "FrameRate": "30000/1001", "Type": "H264Layer" }
      ],
      "Type": "H264Video"
    },
    { "Profile": "AACLC", "Channels": "2", "SamplingRate": "44100", "Bitrate": "96",
      "Condition": "insertsilenceifnoaudio", "Type": "AACAudio" },
    { "Start": "{Best}",
      "JpgLayers": [ { "Quality": "85", "Type": "JpgLayer", "Width": 320, "Height": 180, } ],
      "Type": "JpgImage" },
    { "Start": "10%", "Step": "00:00:01", "Range": "90",
      "PngLayers": [ { "Width": "100%", "Height": "100%" } ], "Type": "pngimage" }
  ],
  "Outputs": [
    { "FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4", "Format": { "Type": "MP4Format" } },
    { "FileName": "{Basename}_{Index}{Extension}", "Format": { "Type": "JpgFormat" } },
    { "FileName": "{Basename}_png_{Index}{Extension}", "Format": { "type": "pngformat" } },
  ]
}
"""

XML_PRESET = f"""<?xml version="1.0" encoding="utf-16"?>
<Preset xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        Version="1.0" xmlns="{NS}">
  <Sources>
    <Source StartTime="PT4S" Duration="PT1M14.5S" />
  </Sources>
  <Encoding>
    <H264Video Condition="InsertBlackIfNoVideo">
      <KeyFrameInterval>00:00:02</KeyFrameInterval>
      <SceneChangeDetection>false</SceneChangeDetection>
      <StretchMode>AutoSize</StretchMode>
      <H264Layers>
        <H264Layer>
          <Bitrate>3400</Bitrate><Width>1280</Width><Height>720</Height><FrameRate>0/1</FrameRate>
          <Profile>Auto</Profile><Level>auto</Level><BFrames>3</BFrames><ReferenceFrames>3</ReferenceFrames>
          <Slices>0</Slices><AdaptiveBFrame>true</AdaptiveBFrame><EntropyMode>Cabac</EntropyMode>
          <BufferWindow>00:00:05</BufferWindow><MaxBitrate>3400</MaxBitrate>
        </H264Layer>
        <H264Layer>
          <Bitrate>400</Bitrate><Width>320</Width><Height>180</Height><FrameRate>0/1</FrameRate>
        </H264Layer>
      </H264Layers>
      <Chapters />
    </H264Video>
    <AACAudio Condition="InsertSilenceIfNoAudio">
      <Profile>AACLC</Profile><Channels>2</Channels><SamplingRate>48000</SamplingRate><Bitrate>128</Bitrate>
    </AACAudio>
    <BmpImage Start="10%" Step="10%" Range="90%">
      <BmpLayers><BmpLayer><Width>640</Width><Height>360</Height></BmpLayer></BmpLayers>
    </BmpImage>
  </Encoding>
  <Outputs>
    <Output FileName="{{Basename}}_{{Width}}x{{Height}}_{{VideoBitrate}}.mp4"><MP4Format /></Output>
    <Output FileName="{{Basename}}_{{Index}}{{Extension}}"><BmpFormat /></Output>
  </Outputs>
</Preset>
"""


def test_lenient_json_is_read_fully() -> None:
    preset = load_preset(LENIENT_JSON)
    assert preset.version == "1.0"
    assert preset.sources[0].start_time == 1.0 and preset.sources[0].duration == 2.5
    video = preset.video
    assert isinstance(video, H264Video)
    assert video.stretch_mode == "AutoFit" and video.key_frame_interval == 2.0
    top, half = video.layers
    assert top.width == Dimension(640) and top.height == Dimension(360)
    assert top.bitrate == 1200 and top.max_bitrate == 1500 and top.buffer_window == 3.0
    assert top.profile == "High" and top.level == "4" and top.b_frames == 2 and top.reference_frames == 4
    assert top.entropy_mode == "Cavlc" and top.adaptive_b_frame is True
    assert top.frame_rate == Fraction(30000, 1001)
    assert half.width == Dimension(50, percent=True)
    audio = preset.audio
    assert isinstance(audio, AACAudio)
    assert (audio.channels, audio.sampling_rate, audio.bitrate) == (2, 44100, 96)
    assert audio.condition == "InsertSilenceIfNoAudio"
    jpg, png = preset.images
    assert jpg.start == TimeSpec("best") and jpg.layers[0].quality == 85
    assert png.start == TimeSpec("percent", 10) and png.step == TimeSpec("time", 1.0)
    assert png.range == TimeSpec("frame", 90)
    assert [o.format for o in preset.outputs] == ["MP4Format", "JpgFormat", "PngFormat"]


def test_json_with_comments_single_quotes_and_bare_keys() -> None:
    text = """{ Version: 1.0, // hand-written
      'Codecs': [ { Type: 'AACAudio', Bitrate: 128, } ], /* audio only */
      Outputs: [ { FileName: '{Basename}_AAC_{AudioBitrate}.mp4', Format: { Type: 'MP4Format' } } ] }"""
    preset = load_preset(text)
    assert isinstance(preset.audio, AACAudio) and preset.audio.bitrate == 128


def test_codec_type_is_inferred_when_missing() -> None:
    text = json.dumps(
        {
            "Version": 1.0,
            "Codecs": [
                {"H264Layers": [{"Width": 320, "Height": 180, "Bitrate": 300}]},
                {"Channels": 2, "Bitrate": 96},
            ],
            "Outputs": [{"FileName": "{Basename}_{Bitrate}.mp4", "Format": {"Type": "MP4Format"}}],
        }
    )
    preset = load_preset(text)
    assert isinstance(preset.video, H264Video) and isinstance(preset.audio, AACAudio)


@pytest.mark.parametrize("namespace", [NS, NS.replace("https://", "http://"), None])
def test_xml_preset_in_both_namespaces_and_without(namespace: str | None) -> None:
    text = (
        XML_PRESET
        if namespace == NS
        else XML_PRESET.replace(f' xmlns="{NS}"', f' xmlns="{namespace}"' if namespace else "")
    )
    preset = load_preset(text)
    assert preset.sources[0].start_time == 4.0 and preset.sources[0].duration == 74.5
    video = preset.video
    assert isinstance(video, H264Video) and video.condition == "InsertBlackIfNoVideo"
    assert [layer.bitrate for layer in video.layers] == [3400, 400]
    assert video.layers[0].frame_rate is None and video.layers[0].buffer_window == 5.0
    assert isinstance(preset.audio, AACAudio) and preset.audio.condition == "InsertSilenceIfNoAudio"
    (bmp,) = preset.images
    assert (bmp.start, bmp.step, bmp.range) == (
        TimeSpec("percent", 10),
        TimeSpec("percent", 10),
        TimeSpec("percent", 90),
    )
    assert [o.format for o in preset.outputs] == ["MP4Format", "BmpFormat"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8"])
def test_xml_bytes_with_bom(encoding: str) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-8": codecs.BOM_UTF8}[
        encoding
    ]
    preset = load_preset(bom + XML_PRESET.encode(encoding))
    assert preset.video is not None and len(preset.video.layers) == 2


def test_utf16_without_bom_and_json_as_utf16() -> None:
    assert load_preset(XML_PRESET.encode("utf-16-le")).video is not None
    assert load_preset(codecs.BOM_UTF16_LE + LENIENT_JSON.encode("utf-16-le")).video is not None


def test_copy_audio_in_xml() -> None:
    text = f"""<Preset xmlns="{NS}" Version="1.0"><Encoding>
      <H264Video><H264Layers><H264Layer><Bitrate>500</Bitrate><Width>640</Width><Height>360</Height>
      </H264Layer></H264Layers></H264Video><CopyAudio /></Encoding>
      <Outputs><Output FileName="{{Basename}}{{Extension}}"><MP4Format /></Output></Outputs></Preset>"""
    assert isinstance(load_preset(text).audio, CopyAudio)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:02", 2.0),
        ("00:01:30.5", 90.5),
        ("1.00:00:00", 86400.0),
        ("PT2S", 2.0),
        ("PT1M14.5S", 74.5),
        ("P0DT1H0M0S", 3600.0),
        ("3", 3.0),
        (2.5, 2.5),
    ],
)
def test_time_values(text: object, seconds: float) -> None:
    assert parse_time(text) == seconds


def test_syntax_errors_say_where() -> None:
    with pytest.raises(PresetError, match=r"not valid JSON: .*line 2"):
        parse_preset('{"Version": 1.0,\n "Codecs": [ }')
    with pytest.raises(PresetError, match="not well-formed XML"):
        parse_preset("<Preset><Encoding></Preset>")
    with pytest.raises(PresetError, match="expected JSON"):
        parse_preset("Adaptive Streaming")
    with pytest.raises(PresetError, match="unknown namespace"):
        parse_preset('<Preset xmlns="urn:other" Version="1.0"/>')


def test_xml_entities_are_refused() -> None:
    evil = (
        '<?xml version="1.0"?><!DOCTYPE Preset [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'<Preset xmlns="{NS}" Version="1.0"><Outputs><Output FileName="&x;"><MP4Format/></Output>'
        "</Outputs></Preset>"
    )
    with pytest.raises(PresetError, match="DTD"):
        parse_preset(evil)


def test_type_errors_name_the_element() -> None:
    text = json.dumps(
        {
            "Version": 1.0,
            "Codecs": [
                {
                    "Type": "H264Video",
                    "KeyFrameInterval": "two seconds",
                    "H264Layers": [
                        {"Width": "wide", "Height": 180, "Bitrate": 300, "AdaptiveBFrame": "maybe"}
                    ],
                }
            ],
            "Outputs": [{"FileName": "x.mp4", "Format": {"Type": "MP4Format"}}],
        }
    )
    with pytest.raises(PresetError) as info:
        parse_preset(text)
    problems = info.value.problems
    assert (
        "Codecs[0] (H264Video).KeyFrameInterval: expected a time like 00:00:02 or PT2S, got 'two seconds'"
        in problems
    )
    assert any(p.startswith("Codecs[0] (H264Video).H264Layers[0].Width:") for p in problems)
    assert any(p.startswith("Codecs[0] (H264Video).H264Layers[0].AdaptiveBFrame:") for p in problems)


def _preset(codecs_: list[dict], outputs: list[dict] | None = None) -> str:
    return json.dumps(
        {
            "Version": 1.0,
            "Codecs": codecs_,
            "Outputs": outputs
            if outputs is not None
            else [
                {
                    "FileName": "{Basename}_{Width}x{Height}_{VideoBitrate}.mp4",
                    "Format": {"Type": "MP4Format"},
                }
            ],
        }
    )


def _problems(text: str) -> list[str]:
    with pytest.raises(PresetError) as info:
        load_preset(text)
    return info.value.problems


def test_validation_reports_every_problem_with_its_element() -> None:
    problems = _problems(
        _preset(
            [
                {
                    "Type": "H264Video",
                    "SceneChangeDetection": True,
                    "H264Layers": [
                        {
                            "Width": 641,
                            "Height": 360,
                            "Bitrate": 1000,
                            "MaxBitrate": 800,
                            "FrameRate": "30/1",
                        },
                        {"Width": "150%", "Height": 180, "FrameRate": "25/1"},
                    ],
                },
                {"Type": "AACAudio", "Channels": 3, "SamplingRate": 12345, "Bitrate": 2},
                {
                    "Type": "JpgImage",
                    "Start": "{Best}",
                    "JpgLayers": [{"Width": 320, "Height": 180, "Quality": 0}],
                },
            ],
            outputs=[
                {"FileName": "{Basename}_{Size}.mp4", "Format": {"Type": "MP4Format"}},
                {"FileName": "{Basename}.jpg", "Format": {"Type": "JpgFormat"}},
                {"FileName": "../{Basename}_{Index}.png", "Format": {"Type": "PngFormat"}},
            ],
        )
    )
    expected = [
        "Codecs[0] (H264Video).SceneChangeDetection: true is only allowed with a single H264Layer",
        "Codecs[0] (H264Video).H264Layers[0].Width: must be an even number (got 641)",
        "Codecs[0] (H264Video).H264Layers[0].MaxBitrate: must not be lower than Bitrate (800 < 1000)",
        "Codecs[0] (H264Video).H264Layers[1].Width: a percentage must be between 1% and 100% (got 150%)",
        "Codecs[0] (H264Video).H264Layers[1].Bitrate: required (kbps)",
        "Codecs[0] (H264Video).H264Layers: every layer must use the same FrameRate",
        "Codecs[1] (AACAudio).Channels: must be one of 1, 2, 5, 6, 8 (got 3)",
        "Codecs[1] (AACAudio).SamplingRate: must be one of",
        "Codecs[1] (AACAudio).Bitrate: 2 kbps is outside the usable range",
        "Codecs[2] (JpgImage).JpgLayers[0].Quality: must be between 1 and 100 (got 0)",
        "Outputs: PngFormat output has no PngImage codec",
        "Outputs[0].FileName: unknown macro {Size}",
        "Outputs[1].FileName: image outputs (JpgFormat) need the {Index} macro exactly once (found 0)",
        "Outputs[2].FileName: must be a plain file name",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)


def test_validation_of_structure() -> None:
    assert any("at least one codec" in p for p in _problems(_preset([])))
    assert any(
        "JpgImage needs an output with JpgFormat" in p
        for p in _problems(
            _preset([{"Type": "JpgImage", "JpgLayers": [{"Width": 64, "Height": 64}]}], outputs=[])
        )
    )
    assert any(
        "H264Layers: at least one H264Layer" in p
        for p in _problems(_preset([{"Type": "H264Video", "H264Layers": []}]))
    )
    assert any("unknown codec Type 'H265Video'" in p for p in _problems(_preset([{"Type": "H265Video"}])))
    overlay = json.loads(_preset([{"Type": "AACAudio"}]))
    overlay["Sources"] = [{"Filters": {"VideoOverlay": {"Source": "logo.png"}}}]
    assert any("VideoOverlay: overlays are not supported" in p for p in _problems(json.dumps(overlay)))


def test_json_round_trip_keeps_the_preset() -> None:
    preset = load_preset(LENIENT_JSON)
    again = validate(parse_preset(json.dumps(preset_to_dict(preset))))
    assert preset_to_dict(again) == preset_to_dict(preset)
    assert isinstance(again.images[1], ImageCodec)
