// dali_mix.MixNormalize: the whole planned RandomMix of a batch and its normalisation in one
// pass over the pixels, as a DALI CPU operator (a plugin, loaded by dali_mix/native/__init__.py).
//
// Per sample i, with partner j = perm[i] (uint8 HWC images of the batch, all of one H, W, C):
//   base   pixel (y, x)        = blend_i * own(y, x) + (1 - blend_i) * partner(y, x)   (Mixup;
//                                 blend 1 = the own pixel, no arithmetic on the partner)
//   boxes  (y0, x0, h, w) rows  : pixels inside a box are the partner's                 (CutMix)
//   mask   (H, W) ranks, k, flips: pixels whose rank (at the flipped position) is >= k are
//                                 the partner's: k own pixels, lam = k / (H W) exactly    (FMix)
//   patch  (y0, x0, h, w)       : pixels inside are the partner shrunk to h x w by nearest
//                                 neighbour (the same pixels as fn.resize with INTERP_NN)
//                                                                                  (ResizeMix)
// then out[c, y, x'] = (pixel[c] - mean[c]) / std[c] with x' = W - 1 - x when mirror_i, as
// fn.crop_mirror_normalize(..., output_layout="CHW") computes it: float32 or float16 CHW.
//
// The graph it replaces (multi_paste, permute_batch, resize, a second multi_paste, a
// conditional around Mixup's two crop_mirror_normalize and an add, then crop_mirror_normalize)
// reads and writes every image several times; here each row is mixed in uint8 (a copy of the
// own row with the partner's pixels put in, only where there are any) and normalised once.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
constexpr int kNumInputs = 7;  // images and the six plan inputs

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

// Normalises a float HWC row (`tmp`, W * C values) into the C planes of output row `out`.
template <typename Out, int C>
inline void StoreRow(Out *out, int64_t plane, int W, bool mirror, const float *tmp,
                     const Affine &a) {
  for (int c = 0; c < C; c++) {
    Out *o = out + c * plane;
    const float s = a.scale[c], t = a.shift[c];
    if (!mirror) {
      for (int x = 0; x < W; x++) o[x] = Cast<Out>(tmp[x * C + c] * s + t);
    } else {
      Out *m = o + (W - 1);
      for (int x = 0; x < W; x++) m[-x] = Cast<Out>(tmp[x * C + c] * s + t);
    }
  }
}

// A whole row: out = (row - mean) / std; the uint8 -> float conversion first, in one contiguous
// loop the compiler vectorises (much faster than converting inside the strided channel loops).
template <typename Out, int C>
inline void ConvertRow(Out *out, int64_t plane, int W, bool mirror, const uint8_t *row,
                       const Affine &a, float *tmp) {
  for (int i = 0; i < W * C; i++) tmp[i] = row[i];
  StoreRow<Out, C>(out, plane, W, mirror, tmp, a);
}

// Mixup row: out = (lam * a + (1 - lam) * b - mean) / std, the blend first, as above.
template <typename Out, int C>
inline void BlendRow(Out *out, int64_t plane, int W, bool mirror, const uint8_t *a_row,
                     const uint8_t *b_row, float lam, const Affine &a, float *tmp) {
  const float wa = lam, wb = 1.0f - lam;
  for (int i = 0; i < W * C; i++) tmp[i] = a_row[i] * wa + b_row[i] * wb;
  StoreRow<Out, C>(out, plane, W, mirror, tmp, a);
}

struct SampleArgs {
  const uint8_t *own;
  const uint8_t *partner;
  float blend;
  const int32_t *boxes;  // (n_boxes, 4): y0, x0, h, w
  int64_t n_boxes;
  const int32_t *patch;  // (4,): y0, x0, h, w; h or w == 0: none
  const void *mask;      // (H, W) ranks (uint16 or int32) or nullptr: none
  const int32_t *mask_params;  // (3,): k, flip_y, flip_x
  bool mirror;
};

// ResizeMix: the source row and column of every patch pixel, nearest neighbour exactly as
// DALI's CPU resize (INTERP_NN, antialias off) picks them: columns at floor((x + 0.5f) * scale),
// rows by accumulating the scale in float from 0.5f * scale.
struct PatchMap {
  int y0 = 0, x0 = 0, h = 0, w = 0;
  std::vector<int> rows;  // source row of patch row y - y0
  std::vector<int> cols;  // source column of output column x (x0 <= x < x0 + w)
};

PatchMap MakePatchMap(int H, int W, const int32_t *patch) {
  PatchMap m;
  if (patch[2] <= 0 || patch[3] <= 0) return m;
  m.y0 = patch[0], m.x0 = patch[1], m.h = patch[2], m.w = patch[3];
  m.cols.resize(W);
  const float sx = static_cast<float>(W) / static_cast<float>(m.w);
  for (int x = 0; x < m.w; x++)
    m.cols[m.x0 + x] = std::min(static_cast<int>(std::floor((x + 0.5f) * sx)), W - 1);
  const float sy = static_cast<float>(H) / static_cast<float>(m.h);
  float src_y = 0.5f * sy;
  for (int y = 0; y < m.h; y++, src_y += sy)
    m.rows.push_back(std::min(static_cast<int>(std::floor(src_y)), H - 1));
  return m;
}

// Row y of the mixed sample as uint8 HWC: the own pixels, the partner's where a box, the FMix
// mask or the ResizeMix patch says. Returns the own row itself when nothing of the partner is in
// it, else `buf` (W * C bytes) holding the mixed row.
template <int C, typename Rank>
const uint8_t *MixedRow(int y, int H, int W, const SampleArgs &s, const PatchMap &pm,
                        uint8_t *buf) {
  const int64_t stride = static_cast<int64_t>(W) * C;
  const uint8_t *own = s.own + y * stride, *partner = s.partner + y * stride;
  const uint8_t *row = own;
  auto take = [&]() {
    if (row == own) {
      std::memcpy(buf, own, stride);
      row = buf;
    }
  };
  if (s.mask) {
    const Rank *r = static_cast<const Rank *>(s.mask) +
                    static_cast<int64_t>(s.mask_params[1] ? H - 1 - y : y) * W;
    const int64_t k = s.mask_params[0];
    take();
    if (s.mask_params[2]) {
      for (int x = 0; x < W; x++)
        if (static_cast<int64_t>(r[W - 1 - x]) >= k)
          for (int c = 0; c < C; c++) buf[x * C + c] = partner[x * C + c];
    } else {
      for (int x = 0; x < W; x++)
        if (static_cast<int64_t>(r[x]) >= k)
          for (int c = 0; c < C; c++) buf[x * C + c] = partner[x * C + c];
    }
  }
  for (int64_t b = 0; b < s.n_boxes; b++) {
    const int32_t *box = s.boxes + 4 * b;
    if (y < box[0] || y >= box[0] + box[2] || box[3] == 0) continue;
    take();
    const int64_t x0 = static_cast<int64_t>(box[1]) * C;
    std::memcpy(buf + x0, partner + x0, static_cast<size_t>(box[3]) * C);
  }
  if (pm.h && y >= pm.y0 && y < pm.y0 + pm.h) {
    take();
    const uint8_t *src = s.partner + pm.rows[y - pm.y0] * stride;
    for (int x = pm.x0; x < pm.x0 + pm.w; x++)
      for (int c = 0; c < C; c++) buf[x * C + c] = src[pm.cols[x] * C + c];
  }
  return row;
}

// FMix on top of a Mixup blend: the partner's pixels where rank >= k (rank image flipped as
// drawn). Only for the general case of a blend combined with a mask; plans never combine them.
template <typename Out, int C, typename Rank>
void PasteMask(Out *out, int H, int W, const SampleArgs &s, const Affine &a) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t stride = static_cast<int64_t>(W) * C;
  const Rank *ranks = static_cast<const Rank *>(s.mask);
  const int64_t k = s.mask_params[0];
  const bool flip_y = s.mask_params[1] != 0, flip_x = s.mask_params[2] != 0;
  for (int y = 0; y < H; y++) {
    const Rank *r = ranks + static_cast<int64_t>(flip_y ? H - 1 - y : y) * W;
    const uint8_t *src = s.partner + y * stride;
    Out *o = out + static_cast<int64_t>(y) * W;
    for (int x = 0; x < W; x++) {
      if (static_cast<int64_t>(r[flip_x ? W - 1 - x : x]) < k) continue;  // own pixel
      const int xo = s.mirror ? W - 1 - x : x;
      for (int c = 0; c < C; c++)
        o[c * plane + xo] = Cast<Out>(src[x * C + c] * a.scale[c] + a.shift[c]);
    }
  }
}

template <typename Out, int C, typename Rank>
void MixSample(Out *out, int H, int W, const SampleArgs &s, const Affine &a) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t stride = static_cast<int64_t>(W) * C;
  const PatchMap pm = MakePatchMap(H, W, s.patch);
  std::vector<float> tmp(stride);
  if (s.blend == 1.0f) {  // CutMix, FMix, ResizeMix, none: pick each pixel in uint8, normalise once
    std::vector<uint8_t> buf(stride);
    for (int y = 0; y < H; y++)
      ConvertRow<Out, C>(out + static_cast<int64_t>(y) * W, plane, W, s.mirror,
                         MixedRow<C, Rank>(y, H, W, s, pm, buf.data()), a, tmp.data());
    return;
  }
  // Mixup; anything of the partner given as well is written over the blend
  auto row_out = [&](int64_t y) { return out + y * W; };
  for (int y = 0; y < H; y++)
    BlendRow<Out, C>(row_out(y), plane, W, s.mirror, s.own + y * stride, s.partner + y * stride,
                     s.blend, a, tmp.data());
  for (int64_t b = 0; b < s.n_boxes; b++) {
    const int32_t *box = s.boxes + 4 * b;
    for (int y = box[0]; y < box[0] + box[2]; y++)
      NormalizeRow<Out, C>(row_out(y), plane, W, box[1], box[1] + box[3], s.mirror,
                           s.partner + y * stride, nullptr, a);
  }
  if (s.mask) PasteMask<Out, C, Rank>(out, H, W, s, a);
  for (int y = 0; y < pm.h; y++)
    NormalizeRow<Out, C>(row_out(pm.y0 + y), plane, W, pm.x0, pm.x0 + pm.w, s.mirror,
                         s.partner + pm.rows[y] * stride, pm.cols.data(), a);
}

template <typename Out, typename Rank>
void MixSampleAnyC(Out *out, int H, int W, int C, const SampleArgs &s, const Affine &a) {
  switch (C) {
    case 1: MixSample<Out, 1, Rank>(out, H, W, s, a); break;
    case 2: MixSample<Out, 2, Rank>(out, H, W, s, a); break;
    case 3: MixSample<Out, 3, Rank>(out, H, W, s, a); break;
    default: MixSample<Out, 4, Rank>(out, H, W, s, a); break;
  }
}

std::string SampleName(int i) { return "sample " + std::to_string(i); }

// (y, x, h, w) lies inside an H x W image (sums in 64 bits: no wrap-around for huge h or w).
bool Inside(const int32_t *r, int64_t H, int64_t W) {
  return r[0] >= 0 && r[1] >= 0 && r[2] >= 0 && r[3] >= 0 && int64_t{r[0]} + r[2] <= H &&
         int64_t{r[1]} + r[3] <= W;
}

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
    const int n = images.num_samples();
    DALI_ENFORCE(images.type() == DALI_UINT8,
                 "MixNormalize: images must be uint8 (for other types, random_mix(fused=False) "
                 "uses DALI's operators)");
    DALI_ENFORCE(images.sample_dim() == 3, "MixNormalize: images must be HWC (3 dimensions)");
    const auto layout = images.GetLayout();
    DALI_ENFORCE(layout.empty() || layout == "HWC",
                 "MixNormalize: images must be HWC, got layout " + layout.str());
    DALI_ENFORCE(ws.NumInput() == 1 || ws.NumInput() == kNumInputs,
                 "MixNormalize: give the images alone (normalise only) or with all six plan "
                 "inputs (perm, blend, boxes, patch, mask, mask_params)");
    const bool mixing = ws.NumInput() == kNumInputs;
    if (mixing)
      ValidatePlan(images, ws.Input<CPUBackend>(1), ws.Input<CPUBackend>(2),
                   ws.Input<CPUBackend>(3), ws.Input<CPUBackend>(4), ws.Input<CPUBackend>(5),
                   ws.Input<CPUBackend>(6));
    const auto &shape = images.shape();
    TensorListShape<3> out_shape(n);
    for (int i = 0; i < n; i++) {
      auto sh = shape.tensor_shape_span(i);
      // a partner's pixels are taken at the same place: mixing needs one shape per batch
      DALI_ENFORCE(!mixing || (sh[0] == shape.tensor_shape_span(0)[0] &&
                               sh[1] == shape.tensor_shape_span(0)[1] &&
                               sh[2] == shape.tensor_shape_span(0)[2]),
                   "MixNormalize: every image of the batch must have the same shape; " +
                   SampleName(i) + " differs from sample 0");
      DALI_ENFORCE(sh[2] >= 1 && sh[2] <= kMaxChannels, "MixNormalize: 1 to 4 channels");
      DALI_ENFORCE(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == sh[2],
                   "MixNormalize: mean needs 1 or C values");
      DALI_ENFORCE(std_.size() == 1 || static_cast<int64_t>(std_.size()) == sh[2],
                   "MixNormalize: std needs 1 or C values");
      out_shape.set_tensor_shape(i, ::dali::TensorShape<3>(sh[2], sh[0], sh[1]));
    }
    output_desc.resize(1);
    output_desc[0] = {out_shape, dtype_};
    return true;
  }

  static void ValidatePlan(const ::dali::TensorList<CPUBackend> &images,
                           const ::dali::TensorList<CPUBackend> &perm,
                           const ::dali::TensorList<CPUBackend> &blend,
                           const ::dali::TensorList<CPUBackend> &boxes,
                           const ::dali::TensorList<CPUBackend> &patch,
                           const ::dali::TensorList<CPUBackend> &mask,
                           const ::dali::TensorList<CPUBackend> &mask_params) {
    const int n = images.num_samples();
    DALI_ENFORCE(perm.type() == DALI_INT32 && blend.type() == DALI_FLOAT &&
                 boxes.type() == DALI_INT32 && patch.type() == DALI_INT32,
                 "MixNormalize: perm, boxes and patch must be int32 and blend float32");
    DALI_ENFORCE(mask.type() == DALI_UINT16 || mask.type() == DALI_INT32,
                 "MixNormalize: mask (pixel ranks) must be uint16 or int32");
    DALI_ENFORCE(mask_params.type() == DALI_INT32, "MixNormalize: mask_params must be int32");
    DALI_ENFORCE(perm.num_samples() == n && blend.num_samples() == n && boxes.num_samples() == n &&
                 patch.num_samples() == n && mask.num_samples() == n &&
                 mask_params.num_samples() == n,
                 "MixNormalize: every input needs one sample per image");
    for (int i = 0; i < n; i++) {
      auto sh = images.shape().tensor_shape_span(i);
      DALI_ENFORCE(perm.shape().tensor_size(i) == 1 && blend.shape().tensor_size(i) == 1,
                   "MixNormalize: perm and blend are one value per sample");
      auto bs = boxes.shape().tensor_shape_span(i);
      DALI_ENFORCE(boxes.sample_dim() == 2 && bs[1] == 4,
                   "MixNormalize: boxes must be (R, 4) per sample: y, x, h, w");
      DALI_ENFORCE(patch.shape().tensor_size(i) == 4,
                   "MixNormalize: patch must be (4,) per sample: y, x, h, w");
      auto ms = mask.shape().tensor_shape_span(i);
      const bool empty = mask.shape().tensor_size(i) == 0;
      DALI_ENFORCE(empty || ((mask.sample_dim() == 2 || (mask.sample_dim() == 3 && ms[2] == 1)) &&
                             ms[0] == sh[0] && ms[1] == sh[1]),
                   "MixNormalize: the mask of " + SampleName(i) + " must be empty or have the "
                   "image's shape (H, W) or (H, W, 1)");
      DALI_ENFORCE(empty || mask.type() == DALI_INT32 || sh[0] * sh[1] <= 65536,
                   "MixNormalize: uint16 ranks hold at most 65536 pixels; the mask of " +
                   SampleName(i) + " needs int32");
      DALI_ENFORCE(mask_params.shape().tensor_size(i) == 3,
                   "MixNormalize: mask_params must be (3,) per sample: k, flip_y, flip_x");
    }
  }

  void RunImpl(Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const bool mixing = ws.NumInput() == kNumInputs;
    auto &out = ws.Output<CPUBackend>(0);
    out.SetLayout("CHW");
    const int n = images.num_samples();
    if (n == 0) return;
    static const int32_t kNone[4] = {0, 0, 0, 0};  // no patch; mask params of no mask
    std::vector<SampleArgs> args(n);
    for (int i = 0; i < n; i++) {  // validate everything before any work starts
      auto sh = images.shape().tensor_shape_span(i);
      const bool mirror = this->spec_.template GetArgument<int>("mirror", &ws, i) != 0;
      const uint8_t *own = images.tensor<uint8_t>(i);
      args[i] = mixing ? PlanArgs(ws, i, sh[0], sh[1], mirror)
                       : SampleArgs{own, own, 1.0f, nullptr, 0, kNone, nullptr, kNone, mirror};
    }
    const bool int32_ranks = mixing && ws.Input<CPUBackend>(5).type() == DALI_INT32;
    auto &pool = ws.GetThreadPool();
    for (int i = 0; i < n; i++) {
      auto sh = images.shape().tensor_shape_span(i);
      const int H = sh[0], W = sh[1], C = sh[2];
      Affine a{};
      for (int c = 0; c < C; c++) {
        const float m = mean_.size() == 1 ? mean_[0] : mean_[c];
        const float s = std_.size() == 1 ? std_[0] : std_[c];
        a.scale[c] = 1.0f / s;
        a.shift[c] = -m / s;
      }
      pool.AddWork([&, i, H, W, C, a](int) {
        if (dtype_ == DALI_FLOAT && int32_ranks)
          MixSampleAnyC<float, int32_t>(out.mutable_tensor<float>(i), H, W, C, args[i], a);
        else if (dtype_ == DALI_FLOAT)
          MixSampleAnyC<float, uint16_t>(out.mutable_tensor<float>(i), H, W, C, args[i], a);
        else if (int32_ranks)
          MixSampleAnyC<::dali::float16, int32_t>(out.mutable_tensor<::dali::float16>(i), H, W, C,
                                                  args[i], a);
        else
          MixSampleAnyC<::dali::float16, uint16_t>(out.mutable_tensor<::dali::float16>(i), H, W,
                                                   C, args[i], a);
      }, static_cast<int64_t>(H) * W);
    }
    pool.RunAll();
  }

  // Sample i's plan (inputs 1-6), checked against the image size H x W.
  static SampleArgs PlanArgs(const Workspace &ws, int i, int H, int W, bool mirror) {
    const auto &images = ws.Input<CPUBackend>(0);
    const auto &perm = ws.Input<CPUBackend>(1);
    const auto &blend = ws.Input<CPUBackend>(2);
    const auto &boxes = ws.Input<CPUBackend>(3);
    const auto &patch = ws.Input<CPUBackend>(4);
    const auto &mask = ws.Input<CPUBackend>(5);
    const auto &mask_params = ws.Input<CPUBackend>(6);
    const int n = images.num_samples();
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
      DALI_ENFORCE(Inside(r, H, W), "MixNormalize: box " + std::to_string(b) + " of " +
                   SampleName(i) + " is outside the image");
    }
    const int32_t *p = patch.tensor<int32_t>(i);
    DALI_ENFORCE(Inside(p, H, W), "MixNormalize: patch of " + SampleName(i) +
                 " is outside the image");
    const void *m = mask.shape().tensor_size(i) ? mask.raw_tensor(i) : nullptr;
    return {images.tensor<uint8_t>(i), images.tensor<uint8_t>(j), lam, bx, nb, p, m,
            mask_params.tensor<int32_t>(i), mirror};
  }

 private:
  std::vector<float> mean_, std_;
  ::dali::DALIDataType dtype_;
};

}  // namespace dali_mix

DALI_REGISTER_OPERATOR(dali_mix__MixNormalize, ::dali_mix::MixNormalize, ::dali::CPU);

DALI_SCHEMA(dali_mix__MixNormalize)
    .DocStr(R"(Mixes a batch as a RandomMix plan says and normalises it, in one pass.

With the images alone: normalisation only (as crop_mirror_normalize without crop; every image
may have its own size). With the plan (every image of one size), per sample i with partner
perm[i]: the base image is blend * own + (1 - blend) * partner (Mixup; 1 = own); pixels in
`boxes` are the partner's (CutMix); pixels whose `mask` rank (at the position flipped as
`mask_params` says) is >= k are the partner's (FMix); pixels in `patch` are the partner shrunk
to the patch by nearest neighbour (ResizeMix). Then (x - mean) / std, flipped horizontally
where `mirror`, as float32 or float16 CHW.)")
    .NumInput(1, ::dali_mix::kNumInputs)
    .InputDox(0, "images", "TensorList of uint8 HWC",
              "the batch (with a plan, every image the same shape)")
    .InputDox(1, "perm", "TensorList of int32 scalars", "partner of each sample")
    .InputDox(2, "blend", "TensorList of float32 scalars", "weight of the own image (Mixup)")
    .InputDox(3, "boxes", "TensorList of int32 (R, 4)", "y, x, h, w boxes taken from the partner")
    .InputDox(4, "patch", "TensorList of int32 (4,)",
              "y, x, h, w of the shrunk partner (h = 0: none)")
    .InputDox(5, "mask", "TensorList of uint16 or int32 (H, W[, 1])", "FMix pixel ranks, or empty")
    .InputDox(6, "mask_params", "TensorList of int32 (3,)", "k (own pixels), flip_y, flip_x")
    .NumOutput(1)
    .MakeStateless()
    .AddArg("mean", "per-channel mean, pixel units", DALI_FLOAT_VEC)
    .AddArg("std", "per-channel std, pixel units", DALI_FLOAT_VEC)
    .AddOptionalArg("mirror", "flip horizontally (per sample)", 0, true)
    .AddOptionalTypeArg("dtype", "output type: FLOAT or FLOAT16", DALI_FLOAT);
