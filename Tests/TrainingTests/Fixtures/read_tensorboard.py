"""Reads Forge's TensorBoard event files with the real `tensorboard` package, for TensorBoardTests.

    python read_tensorboard.py accumulate LOGDIR OUT.json DUMPDIR
        Loads LOGDIR with EventAccumulator (every event kept) and writes OUT.json:
        scalars {tag: [[step, value]...]}, images {tag: [{step, width, height, file}]} (the
        encoded PNG written to DUMPDIR/file), audio {tag: [{step, sample_rate, length_frames,
        content_type, wav_rate, wav_channels, wav_sample_width, frames}]} (the WAV decoded by the
        `wave` module; frames: its int16 samples), text {tag: [[step, text]]} and
        text_plugin_tags (the tags the text plugin claims).
    python read_tensorboard.py records FILE OUT.json
        Reads FILE record by record with tensorboard's own TFRecord reader (which checks both
        CRCs) and writes {"records": n, "error": null or the reader's message}.

Needs only `pip install tensorboard` (no TensorFlow: tensorboard then uses its own reader stub).
"""
import io
import json
import os
import sys
import wave


def accumulate(logdir, out_path, dump_dir):
    from tensorboard.backend.event_processing import event_accumulator as ea

    keep_all = {ea.SCALARS: 0, ea.IMAGES: 0, ea.AUDIO: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 0, ea.COMPRESSED_HISTOGRAMS: 0}
    acc = ea.EventAccumulator(logdir, size_guidance=keep_all)
    acc.Reload()
    tags = acc.Tags()
    result = {"scalars": {}, "images": {}, "audio": {}, "text": {}}
    for tag in tags["scalars"]:
        result["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    os.makedirs(dump_dir, exist_ok=True)
    for tag in tags["images"]:
        rows = []
        for k, e in enumerate(acc.Images(tag)):
            name = "%s_%d.png" % (tag.replace("/", "_"), k)
            with open(os.path.join(dump_dir, name), "wb") as f:
                f.write(e.encoded_image_string)
            rows.append({"step": e.step, "width": e.width, "height": e.height, "file": name})
        result["images"][tag] = rows
    for tag in tags["audio"]:
        rows = []
        for e in acc.Audio(tag):
            with wave.open(io.BytesIO(e.encoded_audio_string)) as w:
                raw = w.readframes(w.getnframes())
                width, rate, channels = w.getsampwidth(), w.getframerate(), w.getnchannels()
            frames = [int.from_bytes(raw[i:i + 2], "little", signed=True) for i in range(0, len(raw), 2)] if width == 2 else []
            rows.append({"step": e.step, "sample_rate": e.sample_rate,
                         "length_frames": e.length_frames, "content_type": e.content_type,
                         "wav_rate": rate, "wav_channels": channels, "wav_sample_width": width, "frames": frames})
        result["audio"][tag] = rows
    try:
        text_tags = sorted(acc.PluginTagToContent("text").keys())
    except KeyError:  # no value names the text plugin
        text_tags = []
    result["text_plugin_tags"] = text_tags
    for tag in text_tags:
        rows = []
        for e in acc.Tensors(tag):
            proto = e.tensor_proto
            rows.append([e.step, proto.string_val[0].decode("utf-8") if proto.string_val else None])
        result["text"][tag] = rows
    with open(out_path, "w") as f:
        json.dump(result, f)


def records(path, out_path):
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

    reader = pywrap_tensorflow.PyRecordReader_New(path)
    count, error = 0, None
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        except errors.DataLossError as e:
            error = str(e.message if hasattr(e, "message") else e)
            break
        count += 1
    with open(out_path, "w") as f:
        json.dump({"records": count, "error": error}, f)


if __name__ == "__main__":
    if sys.argv[1] == "accumulate":
        accumulate(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "records":
        records(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: read_tensorboard.py accumulate LOGDIR OUT.json DUMPDIR | records FILE OUT.json")
