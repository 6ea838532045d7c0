// dali_mix.MixNormalize: the whole planned RandomMix of a batch and its normalisation in one
// pass over the pixels, as a DALI CPU operator (a plugin, loaded by dali_mix/native/__init__.py).
//
// Per sample i, with partner j = perm[i] (both uint8 HWC images of the same batch, same H, W, C):
//   base   pixel (y, x)        = blend_i * own(y, x) + (1 - blend_i) * partner(y, x)   (Mixup;
//                                 blend 1 = the own pixel, no arithmetic on the partner)
//   boxes  (y0, x0, h, w) rows  : pixels inside a box are the partner's           (CutMix, FMix)
//   patch  (y0, x0, h, w)       : pixels inside are the partner shrunk to h x w by nearest
//                                 neighbour (the same pixels as fn.resize with INTERP_NN)
//                                                                                  (ResizeMix)
// then out[c, y, x'] = (pixel[c] - mean[c]) / std[c] with x' = W - 1 - x when mirror_i, as
// fn.crop_mirror_normalize(..., output_layout="CHW") computes it: float32 or float16 CHW.
//
// The graph it replaces (multi_paste, permute_batch, resize, a second multi_paste, a
// conditional around Mixup's two crop_mirror_normalize and an add, then crop_mirror_normalize)
// reads and writes every image several times; here each output pixel is written once, plus
// once more where a box or patch covers it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "dali/core/float16.h"
#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_mix {

using ::dali::CPUBackend;
using ::dali::OpSpec;
using ::dali::OutputDesc;
using ::dali::TensorListShape;
using ::dali::Workspace;

namespace {

constexpr int kMaxChannels = 4;

struct Affine {  // normalised value = pixel * scale[c] + shift[c]
  float scale[kMaxChannels];
  float shift[kMaxChannels];
};

template <typename Out>
inline Out Cast(float v) { return static_cast<Out>(v); }

// One output row y of every channel from one source row, columns [x0, x1): out[c][y][x'] with
// x' = mirror ? W - 1 - x : x. `src` points at source column 0 of the row; `cols` maps output
// column x to a source column (nullptr: the same column).
template <typename Out, int C>
inline void NormalizeRow(Out *out, int64_t plane, int W, int x0, int x1, bool mirror,
                         const uint8_t *src, const int *cols, const Affine &a) {
  for (int c = 0; c < C; c++) {
    Out *o = out + c * plane;
    const float s = a.scale[c], t = a.shift[c];
    if (!mirror) {
      if (cols) {
        for (int x = x0; x < x1; x++) o[x] = Cast<Out>(src[cols[x] * C + c] * s + t);
      } else {
        for (int x = x0; x < x1; x++) o[x] = Cast<Out>(src[x * C + c] * s + t);
      }
    } else {
      Out *m = o + (W - 1);
      if (cols) {
        for (int x = x0; x < x1; x++) m[-x] = Cast<Out>(src[cols[x] * C + c] * s + t);
      } else {
        for (int x = x0; x < x1; x++) m[-x] = Cast<Out>(src[x * C + c] * s + t);
      }
    }
  }
}

// Mixup row: out = (lam * a + (1 - lam) * b - mean) / std, all columns.
template <typename Out, int C>
inline void BlendRow(Out *out, int64_t plane, int W, bool mirror, const uint8_t *a_row,
                     const uint8_t *b_row, float lam, const Affine &a) {
  for (int c = 0; c < C; c++) {
    Out *o = out + c * plane;
    const float sa = lam * a.scale[c], sb = (1.0f - lam) * a.scale[c], t = a.shift[c];
    if (!mirror) {
      for (int x = 0; x < W; x++) o[x] = Cast<Out>(a_row[x * C + c] * sa + b_row[x * C + c] * sb + t);
    } else {
      Out *m = o + (W - 1);
      for (int x = 0; x < W; x++) m[-x] = Cast<Out>(a_row[x * C + c] * sa + b_row[x * C + c] * sb + t);
    }
  }
}

struct SampleArgs {
  const uint8_t *own;
  const uint8_t *partner;
  float blend;
  const int32_t *boxes;  // (n_boxes, 4): y0, x0, h, w
  int64_t n_boxes;
  const int32_t *patch;  // (4,): y0, x0, h, w; h or w == 0: none
  bool mirror;
};

template <typename Out, int C>
void MixSample(Out *out, int H, int W, const SampleArgs &s, const Affine &a) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t stride = static_cast<int64_t>(W) * C;
  if (s.blend == 1.0f) {
    for (int y = 0; y < H; y++)
      NormalizeRow<Out, C>(out + y * W, plane, W, 0, W, s.mirror, s.own + y * stride, nullptr, a);
  } else {
    for (int y = 0; y < H; y++)
      BlendRow<Out, C>(out + y * W, plane, W, s.mirror, s.own + y * stride, s.partner + y * stride,
                       s.blend, a);
  }
  for (int64_t b = 0; b < s.n_boxes; b++) {
    const int32_t *box = s.boxes + 4 * b;
    const int y0 = box[0], x0 = box[1], h = box[2], w = box[3];
    for (int y = y0; y < y0 + h; y++)
      NormalizeRow<Out, C>(out + y * W, plane, W, x0, x0 + w, s.mirror, s.partner + y * stride,
                           nullptr, a);
  }
  const int py = s.patch[0], px = s.patch[1], ph = s.patch[2], pw = s.patch[3];
  if (ph > 0 && pw > 0) {
    // nearest neighbour exactly as DALI's CPU resize (INTERP_NN, antialias off): columns at
    // floor((x + 0.5f) * scale), rows by accumulating the scale in float from 0.5f * scale
    std::vector<int> cols(W);
    const float sx = static_cast<float>(W) / static_cast<float>(pw);
    for (int x = 0; x < pw; x++)
      cols[px + x] = std::min(static_cast<int>(std::floor((x + 0.5f) * sx)), W - 1);
    const float sy = static_cast<float>(H) / static_cast<float>(ph);
    float src_y = 0.5f * sy;
    for (int y = 0; y < ph; y++, src_y += sy) {
      const int row = std::min(static_cast<int>(std::floor(src_y)), H - 1);
      NormalizeRow<Out, C>(out + (py + y) * W, plane, W, px, px + pw, s.mirror,
                           s.partner + row * stride, cols.data(), a);
    }
  }
}

template <typename Out>
void MixSampleAnyC(Out *out, int H, int W, int C, const SampleArgs &s, const Affine &a) {
  switch (C) {
    case 1: MixSample<Out, 1>(out, H, W, s, a); break;
    case 2: MixSample<Out, 2>(out, H, W, s, a); break;
    case 3: MixSample<Out, 3>(out, H, W, s, a); break;
    default: MixSample<Out, 4>(out, H, W, s, a); break;
  }
}

std::string SampleName(int i) { return "sample " + std::to_string(i); }

}  // namespace

class MixNormalize : public ::dali::StatelessOperator<CPUBackend> {  // checkpoints: nothing to save
 public:
  explicit MixNormalize(const OpSpec &spec)
      : ::dali::StatelessOperator<CPUBackend>(spec),
        mean_(spec.GetRepeatedArgument<float>("mean")),
        std_(spec.GetRepeatedArgument<float>("std")),
        dtype_(spec.GetArgument<::dali::DALIDataType>("dtype")) {
    DALI_ENFORCE(dtype_ == DALI_FLOAT || dtype_ == DALI_FLOAT16,
                 "MixNormalize: dtype must be FLOAT or FLOAT16");
    for (float s : std_) DALI_ENFORCE(s > 0.0f, "MixNormalize: every std must be > 0");
  }

 protected:
  bool SetupImpl(std::vector<OutputDesc> &output_desc, const Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const auto &perm = ws.Input<CPUBackend>(1);
    const auto &blend = ws.Input<CPUBackend>(2);
    const auto &boxes = ws.Input<CPUBackend>(3);
    const auto &patch = ws.Input<CPUBackend>(4);
    const int n = images.num_samples();
    DALI_ENFORCE(images.type() == DALI_UINT8, "MixNormalize: images must be uint8");
    DALI_ENFORCE(images.sample_dim() == 3, "MixNormalize: images must be HWC (3 dimensions)");
    DALI_ENFORCE(perm.type() == DALI_INT32 && blend.type() == DALI_FLOAT &&
                 boxes.type() == DALI_INT32 && patch.type() == DALI_INT32,
                 "MixNormalize: perm, boxes and patch must be int32 and blend float32");
    DALI_ENFORCE(perm.num_samples() == n && blend.num_samples() == n && boxes.num_samples() == n &&
                 patch.num_samples() == n, "MixNormalize: every input needs one sample per image");
    const auto &shape = images.shape();
    TensorListShape<3> out_shape(n);
    for (int i = 0; i < n; i++) {
      auto sh = shape.tensor_shape_span(i);
      DALI_ENFORCE(sh[0] == shape.tensor_shape_span(0)[0] && sh[1] == shape.tensor_shape_span(0)[1] &&
                   sh[2] == shape.tensor_shape_span(0)[2],
                   "MixNormalize: every image of the batch must have the same shape; " +
                   SampleName(i) + " differs from sample 0");
      DALI_ENFORCE(sh[2] >= 1 && sh[2] <= kMaxChannels, "MixNormalize: 1 to 4 channels");
      DALI_ENFORCE(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == sh[2],
                   "MixNormalize: mean needs 1 or C values");
      DALI_ENFORCE(std_.size() == 1 || static_cast<int64_t>(std_.size()) == sh[2],
                   "MixNormalize: std needs 1 or C values");
      DALI_ENFORCE(perm.shape().tensor_size(i) == 1 && blend.shape().tensor_size(i) == 1,
                   "MixNormalize: perm and blend are one value per sample");
      auto bs = boxes.shape().tensor_shape_span(i);
      DALI_ENFORCE(boxes.sample_dim() == 2 && bs[1] == 4,
                   "MixNormalize: boxes must be (R, 4) per sample: y, x, h, w");
      DALI_ENFORCE(patch.shape().tensor_size(i) == 4,
                   "MixNormalize: patch must be (4,) per sample: y, x, h, w");
      out_shape.set_tensor_shape(i, ::dali::TensorShape<3>(sh[2], sh[0], sh[1]));
    }
    output_desc.resize(1);
    output_desc[0] = {out_shape, dtype_};
    return true;
  }

  void RunImpl(Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const auto &perm = ws.Input<CPUBackend>(1);
    const auto &blend = ws.Input<CPUBackend>(2);
    const auto &boxes = ws.Input<CPUBackend>(3);
    const auto &patch = ws.Input<CPUBackend>(4);
    auto &out = ws.Output<CPUBackend>(0);
    out.SetLayout("CHW");
    const int n = images.num_samples();
    auto sh = images.shape().tensor_shape_span(0);
    const int H = sh[0], W = sh[1], C = sh[2];
    Affine a{};
    for (int c = 0; c < C; c++) {
      const float m = mean_.size() == 1 ? mean_[0] : mean_[c];
      const float s = std_.size() == 1 ? std_[0] : std_[c];
      a.scale[c] = 1.0f / s;
      a.shift[c] = -m / s;
    }
    std::vector<SampleArgs> args(n);
    for (int i = 0; i < n; i++) {  // validate everything before any work starts
      const int j = perm.tensor<int32_t>(i)[0];
      DALI_ENFORCE(j >= 0 && j < n, "MixNormalize: perm of " + SampleName(i) + " is " +
                   std::to_string(j) + ", outside the batch of " + std::to_string(n));
      const float lam = blend.tensor<float>(i)[0];
      DALI_ENFORCE(lam >= 0.0f && lam <= 1.0f, "MixNormalize: blend of " + SampleName(i) +
                   " must be in [0, 1], got " + std::to_string(lam));
      const int32_t *bx = boxes.tensor<int32_t>(i);
      const int64_t nb = boxes.shape().tensor_shape_span(i)[0];
      for (int64_t b = 0; b < nb; b++) {
        const int32_t *r = bx + 4 * b;
        DALI_ENFORCE(r[0] >= 0 && r[1] >= 0 && r[2] >= 0 && r[3] >= 0 && r[0] + r[2] <= H &&
                     r[1] + r[3] <= W, "MixNormalize: box " + std::to_string(b) + " of " +
                     SampleName(i) + " is outside the image");
      }
      const int32_t *p = patch.tensor<int32_t>(i);
      DALI_ENFORCE(p[0] >= 0 && p[1] >= 0 && p[2] >= 0 && p[3] >= 0 && p[0] + p[2] <= H &&
                   p[1] + p[3] <= W, "MixNormalize: patch of " + SampleName(i) +
                   " is outside the image");
      const int mirror = this->spec_.template GetArgument<int>("mirror", &ws, i);
      args[i] = {images.tensor<uint8_t>(i), images.tensor<uint8_t>(j), lam, bx, nb, p, mirror != 0};
    }
    auto &pool = ws.GetThreadPool();
    for (int i = 0; i < n; i++) {
      pool.AddWork([&, i](int) {
        if (dtype_ == DALI_FLOAT)
          MixSampleAnyC(out.mutable_tensor<float>(i), H, W, C, args[i], a);
        else
          MixSampleAnyC(out.mutable_tensor<::dali::float16>(i), H, W, C, args[i], a);
      }, static_cast<int64_t>(H) * W);
    }
    pool.RunAll();
  }

 private:
  std::vector<float> mean_, std_;
  ::dali::DALIDataType dtype_;
};

}  // namespace dali_mix

DALI_REGISTER_OPERATOR(dali_mix__MixNormalize, ::dali_mix::MixNormalize, ::dali::CPU);

DALI_SCHEMA(dali_mix__MixNormalize)
    .DocStr(R"(Mixes a batch as a RandomMix plan says and normalises it, in one pass.

Per sample i with partner perm[i]: the base image is blend * own + (1 - blend) * partner
(Mixup; 1 = own); pixels in `boxes` are the partner's (CutMix, FMix); pixels in `patch` are the
partner shrunk to the patch by nearest neighbour (ResizeMix). Then (x - mean) / std, flipped
horizontally where `mirror`, as float32 or float16 CHW.)")
    .NumInput(5)
    .InputDox(0, "images", "TensorList of uint8 HWC", "the batch, every image the same shape")
    .InputDox(1, "perm", "TensorList of int32 scalars", "partner of each sample")
    .InputDox(2, "blend", "TensorList of float32 scalars", "weight of the own image (Mixup)")
    .InputDox(3, "boxes", "TensorList of int32 (R, 4)", "y, x, h, w boxes taken from the partner")
    .InputDox(4, "patch", "TensorList of int32 (4,)", "y, x, h, w of the shrunk partner (h = 0: none)")
    .NumOutput(1)
    .MakeStateless()
    .AddArg("mean", "per-channel mean, pixel units", DALI_FLOAT_VEC)
    .AddArg("std", "per-channel std, pixel units", DALI_FLOAT_VEC)
    .AddOptionalArg("mirror", "flip horizontally (per sample)", 0, true)
    .AddOptionalTypeArg("dtype", "output type: FLOAT or FLOAT16", DALI_FLOAT);
