// dali_mix.MixNormalize: the whole planned RandomMix of a batch, and optionally its
// normalisation, in one pass over the pixels, as a DALI CPU operator (a plugin, loaded by
// dali_mix/native/__init__.py). The fused executor of every input users have: uint8 or float32
// images, HWC or CHW (read from the data), with or without normalisation.
//
// Per sample i, with partner j = perm[i] (all images of the batch of one shape), as its packed
// plan says (one int32 vector per sample, `dali_mix.native.pack_plan`; see PlanField):
//   base   pixel (y, x)        = blend_i * own(y, x) + (1 - blend_i) * partner(y, x)   (Mixup;
//                                 blend 1 = the own pixel, no arithmetic on the partner)
//   mask   (H, W) ranks, k, flips: pixels whose rank (at the flipped position) is >= k are
//                                 the partner's: k own pixels, lam = k / (H W) exactly    (FMix;
//                                 an empty mask, or k >= H W, takes no partner pixel)
//   rows   (R, 9): source s, source rect (sy, sx, sh, sw), destination rect (dy, dx, dh, dw):
//                                 the destination's pixels are sample s's source rect, resized
//                                 by nearest neighbour where the sizes differ (the same pixels
//                                 as fn.resize with INTERP_NN); in order, after the mask
//                                 (CutMix, ResizeMix, RICAP, Mosaic)
// then, with mean and std, out[c, y, x'] = (pixel[c] - mean[c]) / std[c] with x' = W - 1 - x
// when mirror_i, as fn.crop_mirror_normalize computes it (float32 or float16, CHW unless
// output_layout says HWC). Without normalisation the mixed pixels keep the input's layout and
// type (a Mixup blend of uint8 rounded half away from zero and saturated, as DALI's cast; float16
// on request), flipped where mirror_i.
//
// The mixing works on a "view" of rows: an HWC image is one view of H rows of W * C values; a CHW
// image is C views (its planes) of H rows of W values each, mixed alike. Each row is the own row
// (read in place when nothing of the partner is in it), a copy of it with the partner's pixels
// put in, or (Mixup) the blend in float with the partner's pixels put in; then it is normalised
// and stored once. Same type and layout in and out without normalisation (float CHW, uint8 HWC):
// the own row is copied straight into the output and the partner's pixels written over it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "dali/core/float16.h"
#include "dali/pipeline/data/types.h"
#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_mix {

using ::dali::CPUBackend;
using ::dali::DALIDataType;
using ::dali::OpSpec;
using ::dali::OutputDesc;
using ::dali::TensorListShape;
using ::dali::Workspace;

namespace {

constexpr int kMaxChannels = 4;
constexpr int kNumInputs = 2;  // images and the packed plan
constexpr int kNumTargetInputs = 3;  // and the labels
constexpr int kRowLen = 9;     // source, source rect, destination rect

// A sample's packed plan (int32): these header values, then kNumRows paste rows of kRowLen
// values, then kMaskWords words of FMix ranks: the (H, W) ranks in raster order, uint16 two per
// word (the first in the low half) when H * W <= 65536, else int32 one per word; 0 words: no
// mask. Floats are stored as their float32 bits.
enum PlanField {
  kPerm,           // the partner (an index into the batch)
  kBlend,          // float32: weight of the own image (Mixup; 1 = none)
  kMaskK,          // FMix: own pixels k; then kFlipY, kFlipX (0/1)
  kFlipY,
  kFlipX,
  kWeightOwn,      // float32: the own class's target weight (targets only)
  kWeightPartner,  // float32: the partner's class's target weight (targets only)
  kNumRows,
  kMaskWords,
  kHeaderLen
};

// The mask words of an H x W image's ranks.
int64_t MaskWords(int64_t H, int64_t W) { return H * W <= 65536 ? (H * W + 1) / 2 : H * W; }

float FloatBits(int32_t v) {
  float f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}

struct Affine {  // stored value = pixel * scale[c] + shift[c] (1 and 0 without normalisation)
  float scale[kMaxChannels];
  float shift[kMaxChannels];
};

template <typename Out>
inline Out Cast(float v) { return static_cast<Out>(v); }
// As DALI's cast (ConvertSat: clamp(std::round(v))) for the values uint8 output gets (mixes of
// uint8 pixels, never normalised ones: |v| < 2^31), in a loop the compiler vectorises: rounded
// half away from zero from the truncation (v - trunc(v) is exact), then clamped to [0, 255].
template <>
inline uint8_t Cast<uint8_t>(float v) {
  int t = static_cast<int>(v);
  t += static_cast<int>(v - static_cast<float>(t) >= 0.5f);
  t = t < 0 ? 0 : t;
  t = t > 255 ? 255 : t;
  return static_cast<uint8_t>(t);
}

// A view row (W pixels of CI float values) into a planar (CHW) output: channel ci of pixel x goes
// to o[ci * plane + x'] with x' = mirror ? W - 1 - x : x, as value * scale + shift of channel
// c0 + ci.
template <typename Out, int CI>
inline void StorePlanar(Out *o, int64_t plane, int W, bool mirror, const float *src,
                        const Affine &a, int c0) {
  for (int ci = 0; ci < CI; ci++) {
    Out *p = o + ci * plane;
    const float s = a.scale[c0 + ci], t = a.shift[c0 + ci];
    if (!mirror) {
      for (int x = 0; x < W; x++) p[x] = Cast<Out>(src[x * CI + ci] * s + t);
    } else {
      Out *m = p + (W - 1);
      for (int x = 0; x < W; x++) m[-x] = Cast<Out>(src[x * CI + ci] * s + t);
    }
  }
}

// An HWC view row into an HWC output row (the same W * CI values, pixels flipped where mirror).
template <typename Out, int CI>
inline void StoreSame(Out *__restrict o, int W, bool mirror, const float *__restrict src,
                      const Affine &a, bool identity) {
  if (identity && !mirror) {
    for (int64_t i = 0; i < static_cast<int64_t>(W) * CI; i++) o[i] = Cast<Out>(src[i]);
    return;
  }
  float s[CI], t[CI];
  for (int ci = 0; ci < CI; ci++) s[ci] = a.scale[ci], t[ci] = a.shift[ci];
  for (int x = 0; x < W; x++) {
    Out *q = o + static_cast<int64_t>(mirror ? W - 1 - x : x) * CI;
    for (int ci = 0; ci < CI; ci++) q[ci] = Cast<Out>(src[x * CI + ci] * s[ci] + t[ci]);
  }
}

// A CHW view row (one plane) into an interleaved (HWC) output row of P channels: channel ci of pixel x goes to
// o[x' * P + ci] (the caller offsets o by the view's first channel c0).
template <typename Out>
inline void StoreInterleaved(Out *o, int P, int W, bool mirror, const float *src, const Affine &a,
                             int c0) {
  const float s = a.scale[c0], t = a.shift[c0];
  for (int x = 0; x < W; x++)
    o[static_cast<int64_t>(mirror ? W - 1 - x : x) * P] = Cast<Out>(src[x] * s + t);
}

// tmp = row in float; one contiguous loop the compiler vectorises (much faster than converting
// inside the strided channel loops).
template <typename In>
inline void ToFloat(float *__restrict tmp, const In *__restrict row, int64_t n) {
  for (int64_t i = 0; i < n; i++) tmp[i] = row[i];
}

// Mixup: o = a * wa + b * wb, in float, cast to Out (float: as it is).
template <typename Out, typename In>
inline void Blend(Out *__restrict o, const In *__restrict a, const In *__restrict b, int64_t n,
                  float wa, float wb) {
  for (int64_t i = 0; i < n; i++) o[i] = Cast<Out>(a[i] * wa + b[i] * wb);
}

// A view row copied as it is, flipped pixel by pixel.
template <typename T, int CI>
inline void MirrorCopy(T *o, int W, const T *src) {
  T *m = o + static_cast<int64_t>(W - 1) * CI;
  for (int x = 0; x < W; x++)
    for (int ci = 0; ci < CI; ci++) m[ci - x * CI] = src[x * CI + ci];
}

struct SampleArgs {
  const void *own;       // the sample's pixels (the input type)
  const void *partner;   // its partner's (blend and mask)
  float blend;
  const int32_t *rows;   // (n_rows, 9): source, sy, sx, sh, sw, dy, dx, dh, dw
  int64_t n_rows;
  std::vector<const void *> row_src;  // the pixels of each row's source sample
  const void *mask;      // (H, W) ranks (uint16 or int32) or nullptr: none
  bool int32_ranks;
  const int32_t *mask_params;  // (3,): k, flip_y, flip_x (the plan's kMaskK..kFlipX)
  bool mirror;
};

struct Geometry {
  int H, W, C;
  bool in_planar;   // CHW images (else HWC)
  bool out_planar;  // CHW output (else HWC)
};

// A paste row: the source row and column of every destination pixel. Same size: the same
// offsets (copied span by span). Resized: nearest neighbour exactly as DALI's CPU resize
// (INTERP_NN, antialias off) picks them for a source of the source rect's size: columns at
// floor((x + 0.5f) * scale), rows by accumulating the scale in float from 0.5f * scale.
struct RowMap {
  int dy = 0, dx = 0, dh = 0, dw = 0, sy = 0, sx = 0;
  bool resized = false;
  std::vector<int> rows;  // source row of destination row y - dy (resized)
  std::vector<int> cols;  // source column of destination column x - dx (resized)
};

RowMap MakeRowMap(const int32_t *r) {
  RowMap m;
  m.sy = r[1], m.sx = r[2];
  const int sh = r[3], sw = r[4];
  m.dy = r[5], m.dx = r[6], m.dh = r[7], m.dw = r[8];
  if (m.dh <= 0 || m.dw <= 0) {
    m.dh = m.dw = 0;
    return m;
  }
  m.resized = sh != m.dh || sw != m.dw;
  if (!m.resized) return m;
  const float sx = static_cast<float>(sw) / static_cast<float>(m.dw);
  for (int x = 0; x < m.dw; x++)
    m.cols.push_back(m.sx + std::min(static_cast<int>(std::floor((x + 0.5f) * sx)), sw - 1));
  const float sy = static_cast<float>(sh) / static_cast<float>(m.dh);
  float src_y = 0.5f * sy;
  for (int y = 0; y < m.dh; y++, src_y += sy)
    m.rows.push_back(m.sy + std::min(static_cast<int>(std::floor(src_y)), sh - 1));
  return m;
}

// Whether row y has any other sample's pixels other than by a blend.
inline bool RowTouched(int y, const SampleArgs &s, const std::vector<RowMap> &maps) {
  if (s.mask) return true;
  for (const RowMap &m : maps)
    if (m.dw > 0 && y >= m.dy && y < m.dy + m.dh) return true;
  return false;
}

// FMix: the partner's pixels of row y where the rank (at the flipped position) is >= k. FMix
// masks are smooth (a few runs per row), so the row is scanned for runs of partner pixels and
// each run is copied as one contiguous span.
template <int CI, typename Rank, typename T, typename In>
inline void MaskRow(T *__restrict buf, const In *__restrict partner, int H, int W, int y,
                    const SampleArgs &s) {
  const Rank *r = static_cast<const Rank *>(s.mask) +
                  static_cast<int64_t>(s.mask_params[1] ? H - 1 - y : y) * W;
  const int32_t k = s.mask_params[0];  // ranks compared in int32 (uint16 ones widened)
  const bool flip_x = s.mask_params[2] != 0;
  auto take = [&](int x) { return static_cast<int32_t>(r[flip_x ? W - 1 - x : x]) >= k; };
  for (int x = 0; x < W;) {
    while (x < W && !take(x)) x++;
    const int start = x;
    while (x < W && take(x)) x++;
    const int64_t from = static_cast<int64_t>(start) * CI, to = static_cast<int64_t>(x) * CI;
    if constexpr (std::is_same_v<T, In>) {
      if (to > from) std::memcpy(buf + from, partner + from, static_cast<size_t>(to - from) * sizeof(T));
    } else {
      for (int64_t i = from; i < to; i++) buf[i] = static_cast<T>(partner[i]);
    }
  }
}

// Writes the other samples' pixels of view row y (the mask's, then the paste rows') over `buf`,
// which holds the row's W * CI values (own or blended). `partner` is the partner's view, `v`
// the view (plane) of the rows' sources, of `plane` values each.
template <int CI, typename T, typename In>
void PartnerPixels(int y, int H, int W, const In *partner, const SampleArgs &s,
                   const std::vector<RowMap> &maps, int v, int64_t plane, T *buf) {
  const int64_t stride = static_cast<int64_t>(W) * CI;
  if (s.mask) {
    const In *prow = partner + y * stride;
    if (s.int32_ranks) MaskRow<CI, int32_t>(buf, prow, H, W, y, s);
    else MaskRow<CI, uint16_t>(buf, prow, H, W, y, s);
  }
  for (size_t r = 0; r < maps.size(); r++) {
    const RowMap &m = maps[r];
    if (m.dw == 0 || y < m.dy || y >= m.dy + m.dh) continue;
    const In *src = static_cast<const In *>(s.row_src[r]) + v * plane;
    if (!m.resized) {
      const In *srow = src + static_cast<int64_t>(m.sy + y - m.dy) * stride + static_cast<int64_t>(m.sx) * CI;
      T *dst = buf + static_cast<int64_t>(m.dx) * CI;
      const int64_t len = static_cast<int64_t>(m.dw) * CI;
      if constexpr (std::is_same_v<T, In>) {
        std::memcpy(dst, srow, static_cast<size_t>(len) * sizeof(T));
      } else {
        for (int64_t i = 0; i < len; i++) dst[i] = static_cast<T>(srow[i]);
      }
      continue;
    }
    const In *srow = src + static_cast<int64_t>(m.rows[y - m.dy]) * stride;
    for (int x = 0; x < m.dw; x++)
      for (int c = 0; c < CI; c++)
        buf[(m.dx + x) * CI + c] = static_cast<T>(srow[m.cols[x] * CI + c]);
  }
}

// One sample: images of type In, output Out; CI values per view pixel (C for HWC, 1 for CHW).
// `identity`: no normalisation (scale 1, shift 0).
template <typename In, typename Out, int CI>
void MixSample(Out *out, const Geometry &g, const SampleArgs &s, const Affine &a, bool identity) {
  const int H = g.H, W = g.W, C = g.C;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t stride = static_cast<int64_t>(W) * CI;
  const int views = g.in_planar ? C : 1;
  std::vector<RowMap> maps;
  for (int64_t r = 0; r < s.n_rows; r++) maps.push_back(MakeRowMap(s.rows + kRowLen * r));
  std::vector<float> tmp(stride);
  std::vector<In> buf(stride);
  constexpr bool kSameType = std::is_same_v<In, Out>;
  // same type and layout, no arithmetic: rows are copied, not converted
  const bool copy = kSameType && identity && g.in_planar == g.out_planar;
  const bool blend = s.blend != 1.0f;
  const float wa = s.blend, wb = 1.0f - s.blend;
  for (int v = 0; v < views; v++) {  // v: the plane of a CHW image (0 for HWC)
    const In *own = static_cast<const In *>(s.own) + v * plane;
    const In *partner = static_cast<const In *>(s.partner) + v * plane;
    auto store = [&](Out *o, const float *row) {
      if (g.out_planar) StorePlanar<Out, CI>(o, plane, W, s.mirror, row, a, v);
      else if (!g.in_planar) StoreSame<Out, CI>(o, W, s.mirror, row, a, identity);
      else StoreInterleaved<Out>(o, C, W, s.mirror, row, a, v);
    };
    for (int y = 0; y < H; y++) {
      // where view row y lands: planar output: plane v (channel ci further planes on);
      // interleaved output: row y, channel v (pixel stride C)
      Out *o = g.out_planar ? out + v * plane + static_cast<int64_t>(y) * W
                            : out + static_cast<int64_t>(y) * W * C + v;
      const In *own_row = own + y * stride;
      if (blend) {  // Mixup in float; the partner's other pixels over it
        if constexpr (kSameType) {
          if (copy) {  // straight into the output row (uint8: rounded), or flipped from buf
            Out *dst = s.mirror ? buf.data() : o;
            Blend(dst, own_row, partner + y * stride, stride, wa, wb);
            PartnerPixels<CI>(y, H, W, partner, s, maps, v, plane, dst);
            if (s.mirror) MirrorCopy<In, CI>(o, W, dst);
            continue;
          }
        }
        Blend(tmp.data(), own_row, partner + y * stride, stride, wa, wb);
        PartnerPixels<CI>(y, H, W, partner, s, maps, v, plane, tmp.data());
        store(o, tmp.data());
        continue;
      }
      const bool touched = RowTouched(y, s, maps);
      if constexpr (kSameType) {
        if (copy && !s.mirror) {  // the output row is the view row
          std::memcpy(o, own_row, static_cast<size_t>(stride) * sizeof(In));
          if (touched) PartnerPixels<CI>(y, H, W, partner, s, maps, v, plane, o);
          continue;
        }
      }
      const In *row = own_row;
      if (touched) {
        std::memcpy(buf.data(), own_row, static_cast<size_t>(stride) * sizeof(In));
        PartnerPixels<CI>(y, H, W, partner, s, maps, v, plane, buf.data());
        row = buf.data();
      }
      if constexpr (kSameType) {
        if (copy) {
          MirrorCopy<In, CI>(o, W, row);
          continue;
        }
      }
      if constexpr (std::is_same_v<In, float>) {
        store(o, row);
      } else {  // to float first (see ToFloat)
        ToFloat(tmp.data(), row, stride);
        store(o, tmp.data());
      }
    }
  }
}

template <typename In, typename Out>
void MixSampleAnyC(Out *out, const Geometry &g, const SampleArgs &s, const Affine &a,
                   bool identity) {
  switch (g.in_planar ? 1 : g.C) {
    case 1: MixSample<In, Out, 1>(out, g, s, a, identity); break;
    case 2: MixSample<In, Out, 2>(out, g, s, a, identity); break;
    case 3: MixSample<In, Out, 3>(out, g, s, a, identity); break;
    default: MixSample<In, Out, 4>(out, g, s, a, identity); break;
  }
}

std::string SampleName(int i) { return "sample " + std::to_string(i); }

std::string TypeName(DALIDataType t) { return std::string(::dali::TypeName(t)); }

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
        layout_(spec.GetArgument<std::string>("layout")),
        output_layout_(spec.GetArgument<std::string>("output_layout")),
        image_size_(spec.GetRepeatedArgument<int>("image_size")),
        channels_(spec.GetArgument<int>("channels")) {
    num_classes_ = spec.GetArgument<int>("num_classes");
    target_offset_ = spec.GetArgument<float>("target_offset");
    DALI_ENFORCE(num_classes_ >= 0, "MixNormalize: num_classes must be >= 0 (0: no targets)");
    normalize_ = spec.HasArgument("normalize") ? spec.GetArgument<bool>("normalize")
                                               : !(mean_.empty() && std_.empty());
    DALI_ENFORCE(!normalize_ || (!mean_.empty() && !std_.empty()),
                 "MixNormalize: normalisation needs both mean and std");
    if (normalize_)
      for (float s : std_) DALI_ENFORCE(s > 0.0f, "MixNormalize: every std must be > 0");
    has_dtype_ = spec.HasArgument("dtype");
    if (has_dtype_) {
      dtype_ = spec.GetArgument<DALIDataType>("dtype");
      DALI_ENFORCE(dtype_ == DALI_FLOAT || dtype_ == DALI_FLOAT16 || dtype_ == DALI_UINT8,
                   "MixNormalize: dtype must be FLOAT, FLOAT16 or UINT8, got " +
                   TypeName(dtype_));
    }
    DALI_ENFORCE(layout_.empty() || layout_ == "HWC" || layout_ == "CHW",
                 "MixNormalize: layout must be HWC or CHW, got " + layout_);
    DALI_ENFORCE(output_layout_.empty() || output_layout_ == "HWC" || output_layout_ == "CHW",
                 "MixNormalize: output_layout must be HWC or CHW, got " + output_layout_);
    DALI_ENFORCE(image_size_.empty() ||
                 (image_size_.size() == 2 && image_size_[0] > 0 && image_size_[1] > 0),
                 "MixNormalize: image_size must be two positive values (H, W)");
    DALI_ENFORCE(channels_ >= 0, "MixNormalize: channels must be >= 0 (0: any)");
  }

 protected:
  bool SetupImpl(std::vector<OutputDesc> &output_desc, const Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const int n = images.num_samples();
    in_type_ = images.type();
    DALI_ENFORCE(in_type_ == DALI_UINT8 || in_type_ == DALI_FLOAT,
                 "MixNormalize: images must be uint8 or float32, got " + TypeName(in_type_));
    DALI_ENFORCE(images.sample_dim() == 3,
                 "MixNormalize: images must have 3 dimensions (HWC or CHW), got " +
                 std::to_string(images.sample_dim()));
    const std::string data_layout = images.GetLayout().str();
    DALI_ENFORCE(layout_.empty() || data_layout.empty() || data_layout == layout_,
                 "random_mix: images have layout " + data_layout + " but the recipe says " +
                 layout_ + " (MixRecipe.layout)");
    // no layout on the data: the `layout` argument's, else HWC
    const std::string layout = !data_layout.empty() ? data_layout
                               : !layout_.empty()   ? layout_
                                                    : std::string("HWC");
    DALI_ENFORCE(layout == "HWC" || layout == "CHW",
                 "random_mix: images have layout " + layout + "; the fused operator takes HWC "
                 "or CHW");
    in_planar_ = layout == "CHW";
    out_planar_ = output_layout_.empty() ? (normalize_ || in_planar_) : output_layout_ == "CHW";
    out_type_ = has_dtype_ ? dtype_ : normalize_ ? DALI_FLOAT : in_type_;
    DALI_ENFORCE(out_type_ != DALI_UINT8 || (in_type_ == DALI_UINT8 && !normalize_),
                 "MixNormalize: dtype UINT8 is for mixing uint8 images without normalisation; "
                 "got " + TypeName(in_type_) + " images" +
                 (normalize_ ? std::string(" and mean/std") : std::string()));
    DALI_ENFORCE(ws.NumInput() == 1 || ws.NumInput() == kNumInputs ||
                 ws.NumInput() == kNumTargetInputs,
                 "MixNormalize: give the images alone (normalise only), with the packed plan, "
                 "or with the plan and the labels");
    const bool mixing = ws.NumInput() >= kNumInputs;
    const bool targets = ws.NumInput() == kNumTargetInputs;
    DALI_ENFORCE(targets == (num_classes_ > 0),
                 "MixNormalize: the labels input goes with num_classes > 0");
    const auto &shape = images.shape();
    TensorListShape<3> out_shape(n);
    geom_.resize(n);
    for (int i = 0; i < n; i++) {
      auto sh = shape.tensor_shape_span(i);
      Geometry g;
      g.H = in_planar_ ? sh[1] : sh[0];
      g.W = in_planar_ ? sh[2] : sh[1];
      g.C = in_planar_ ? sh[0] : sh[2];
      g.in_planar = in_planar_;
      g.out_planar = out_planar_;
      DALI_ENFORCE(image_size_.empty() || (g.H == image_size_[0] && g.W == image_size_[1]),
                   "random_mix: image " + std::to_string(i) + " is " + std::to_string(g.H) +
                   "x" + std::to_string(g.W) + " (HxW) but image_size is " +
                   (image_size_.empty() ? std::string()
                                        : std::to_string(image_size_[0]) + "x" +
                                          std::to_string(image_size_[1])));
      // a partner's pixels are taken at the same place: mixing needs one shape per batch
      if (mixing && i > 0) {
        const auto &g0 = geom_[0];
        DALI_ENFORCE(g.H == g0.H && g.W == g0.W && g.C == g0.C,
                     "MixNormalize: every image of the batch must have the same shape; " +
                     SampleName(i) + " differs from sample 0: " + Dims(g) + " vs " + Dims(g0) +
                     " (HxWxC)");
      }
      DALI_ENFORCE(channels_ == 0 || g.C == channels_,
                   "random_mix: image " + std::to_string(i) + " has " + std::to_string(g.C) +
                   " channels (layout " + layout + ") but MixRecipe.channels is " +
                   std::to_string(channels_));
      DALI_ENFORCE(g.C >= 1 && g.C <= kMaxChannels,
                   "MixNormalize: 1 to 4 channels; " + SampleName(i) + " has " +
                   std::to_string(g.C) + " (layout " + layout + ")");
      if (normalize_) {
        DALI_ENFORCE(mean_.size() == 1 || static_cast<int>(mean_.size()) == g.C,
                     "MixNormalize: mean needs 1 or C values");
        DALI_ENFORCE(std_.size() == 1 || static_cast<int>(std_.size()) == g.C,
                     "MixNormalize: std needs 1 or C values");
      }
      geom_[i] = g;
      out_shape.set_tensor_shape(i, out_planar_ ? ::dali::TensorShape<3>(g.C, g.H, g.W)
                                                : ::dali::TensorShape<3>(g.H, g.W, g.C));
    }
    if (mixing) ValidatePlan(ws.Input<CPUBackend>(1));
    output_desc.resize(targets ? 2 : 1);
    output_desc[0] = {out_shape, out_type_};
    if (targets) {
      ValidateTargetInputs(ws);
      output_desc[1] = {::dali::uniform_list_shape(n, ::dali::TensorShape<1>(num_classes_)),
                        DALI_FLOAT};
    }
    return true;
  }

  // The class of sample i's label (one value of any integer or float type; a float is rounded
  // half away from zero, as DALI's cast), checked to lie in [0, num_classes).
  int64_t LabelOf(const ::dali::TensorList<CPUBackend> &labels, int i) const {
    DALI_ENFORCE(labels.shape().tensor_size(i) == 1,
                 "random_mix: the label of " + SampleName(i) + " has " +
                 std::to_string(labels.shape().tensor_size(i)) + " values; give one class index "
                 "per sample (shape () or (1,))");
    const void *p = labels.raw_tensor(i);
    double v = 0;
    bool integral = true;
    switch (labels.type()) {
      case DALI_INT8: v = *static_cast<const int8_t *>(p); break;
      case DALI_UINT8: v = *static_cast<const uint8_t *>(p); break;
      case DALI_INT16: v = *static_cast<const int16_t *>(p); break;
      case DALI_UINT16: v = *static_cast<const uint16_t *>(p); break;
      case DALI_INT32: v = *static_cast<const int32_t *>(p); break;
      case DALI_UINT32: v = *static_cast<const uint32_t *>(p); break;
      case DALI_INT64: v = static_cast<double>(*static_cast<const int64_t *>(p)); break;
      case DALI_UINT64: v = static_cast<double>(*static_cast<const uint64_t *>(p)); break;
      case DALI_FLOAT: v = *static_cast<const float *>(p); integral = false; break;
      case DALI_FLOAT64: v = *static_cast<const double *>(p); integral = false; break;
      default:
        DALI_FAIL("random_mix: labels must be integers (or floats holding class indices), got " +
                  TypeName(labels.type()));
    }
    if (!integral) v = std::round(v);
    const std::string shown = std::fabs(v) < 1e18 ? std::to_string(static_cast<long long>(v))
                                                  : std::to_string(v);  // NaN, inf, huge
    DALI_ENFORCE(v >= 0 && v < num_classes_,
                 "random_mix: the label of " + SampleName(i) + " is " + shown +
                 ", outside [0, " + std::to_string(num_classes_) + ") (MixRecipe.num_classes)");
    return static_cast<int64_t>(v);
  }

  void ValidateTargetInputs(const Workspace &ws) {
    const auto &labels = ws.Input<CPUBackend>(2);
    const int n = static_cast<int>(geom_.size());
    DALI_ENFORCE(labels.num_samples() == n, "MixNormalize: the labels need one sample per image");
    classes_.resize(n);
    for (int i = 0; i < n; i++) classes_[i] = LabelOf(labels, i);
  }

  // Sample i's target row from the classes of SetupImpl and the plan's target weights: own
  // weight at its class, the partner's at the partner's class (their float32 sum where the two
  // classes are one).
  void WriteTargets(Workspace &ws) const {
    const auto &plan = ws.Input<CPUBackend>(1);
    auto &out = ws.Output<CPUBackend>(1);
    const int n = static_cast<int>(classes_.size());
    for (int i = 0; i < n; i++) {
      const int32_t *p = plan.tensor<int32_t>(i);
      const float w_own = FloatBits(p[kWeightOwn]), w_partner = FloatBits(p[kWeightPartner]);
      const int64_t ya = classes_[i], yb = classes_[p[kPerm]];
      float *t = out.mutable_tensor<float>(i);
      for (int64_t c = 0; c < num_classes_; c++)
        t[c] = ((c == ya ? w_own : 0.0f) + (c == yb ? w_partner : 0.0f)) + target_offset_;
    }
  }

  static std::string Dims(const Geometry &g) {
    return std::to_string(g.H) + "x" + std::to_string(g.W) + "x" + std::to_string(g.C);
  }

  // The plan's type and, per sample, its length against its header and the image size (the
  // values are checked where they are read, PlanArgs).
  void ValidatePlan(const ::dali::TensorList<CPUBackend> &plan) const {
    const int n = static_cast<int>(geom_.size());
    DALI_ENFORCE(plan.type() == DALI_INT32,
                 "MixNormalize: the plan must be int32 (dali_mix.native.pack_plan), got " +
                 TypeName(plan.type()));
    DALI_ENFORCE(plan.num_samples() == n, "MixNormalize: the plan needs one sample per image");
    for (int i = 0; i < n; i++) {
      const int64_t len = plan.shape().tensor_size(i);
      DALI_ENFORCE(plan.sample_dim() == 1 && len >= kHeaderLen,
                   "MixNormalize: the plan of " + SampleName(i) + " must be one vector of at "
                   "least " + std::to_string(kHeaderLen) + " int32 values "
                   "(dali_mix.native.pack_plan)");
      const int32_t *p = plan.tensor<int32_t>(i);
      const int64_t rows = p[kNumRows], words = p[kMaskWords];
      const int64_t need = MaskWords(geom_[i].H, geom_[i].W);
      DALI_ENFORCE(rows >= 0 && (words == 0 || words == need),
                   "MixNormalize: the plan of " + SampleName(i) + " has " + std::to_string(rows) +
                   " rows and " + std::to_string(words) + " mask words; the mask of a " +
                   std::to_string(geom_[i].H) + "x" + std::to_string(geom_[i].W) +
                   " image takes 0 or " + std::to_string(need));
      DALI_ENFORCE(len == kHeaderLen + kRowLen * rows + words,
                   "MixNormalize: the plan of " + SampleName(i) + " has " + std::to_string(len) +
                   " values, but its header says " + std::to_string(kHeaderLen) + " + " +
                   std::to_string(kRowLen) + " x " + std::to_string(rows) + " rows + " +
                   std::to_string(words) + " mask words");
    }
  }

  void RunImpl(Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    auto &out = ws.Output<CPUBackend>(0);
    out.SetLayout(out_planar_ ? "CHW" : "HWC");
    if (images.num_samples() == 0) return;
    if (in_type_ == DALI_UINT8) {
      if (out_type_ == DALI_UINT8) Run<uint8_t, uint8_t>(ws);
      else if (out_type_ == DALI_FLOAT) Run<uint8_t, float>(ws);
      else Run<uint8_t, ::dali::float16>(ws);
    } else {
      if (out_type_ == DALI_FLOAT) Run<float, float>(ws);
      else Run<float, ::dali::float16>(ws);
    }
    if (ws.NumInput() == kNumTargetInputs) WriteTargets(ws);  // after Run checked every perm
  }

  template <typename In, typename Out>
  void Run(Workspace &ws) {
    const auto &images = ws.Input<CPUBackend>(0);
    const bool mixing = ws.NumInput() >= kNumInputs;
    auto &out = ws.Output<CPUBackend>(0);
    const int n = images.num_samples();
    static const int32_t kNone[3] = {0, 0, 0};  // mask params of no mask
    std::vector<SampleArgs> args(n);
    for (int i = 0; i < n; i++) {  // validate everything before any work starts
      const bool mirror = this->spec_.template GetArgument<int>("mirror", &ws, i) != 0;
      const void *own = images.raw_tensor(i);
      args[i] = mixing ? PlanArgs(ws, i, geom_[i].H, geom_[i].W, mirror)
                       : SampleArgs{own, own, 1.0f, nullptr, 0, {}, nullptr, false, kNone, mirror};
    }
    auto &pool = ws.GetThreadPool();
    for (int i = 0; i < n; i++) {
      const Geometry g = geom_[i];
      Affine a{};
      for (int c = 0; c < g.C; c++) {
        if (normalize_) {
          const float m = mean_.size() == 1 ? mean_[0] : mean_[c];
          const float s = std_.size() == 1 ? std_[0] : std_[c];
          a.scale[c] = 1.0f / s;
          a.shift[c] = -m / s;
        } else {
          a.scale[c] = 1.0f;
          a.shift[c] = 0.0f;
        }
      }
      pool.AddWork([&, i, g, a](int) {
        MixSampleAnyC<In, Out>(out.template mutable_tensor<Out>(i), g, args[i], a, !normalize_);
      }, static_cast<int64_t>(g.H) * g.W * g.C);
    }
    pool.RunAll();
  }

  // Sample i's plan (input 1, its length checked by ValidatePlan), its values checked against
  // the batch and the image size H x W.
  static SampleArgs PlanArgs(const Workspace &ws, int i, int H, int W, bool mirror) {
    const auto &images = ws.Input<CPUBackend>(0);
    const int32_t *p = ws.Input<CPUBackend>(1).tensor<int32_t>(i);
    const int n = images.num_samples();
    const int j = p[kPerm];
    DALI_ENFORCE(j >= 0 && j < n, "MixNormalize: perm of " + SampleName(i) + " is " +
                 std::to_string(j) + ", outside the batch of " + std::to_string(n));
    const float lam = FloatBits(p[kBlend]);
    DALI_ENFORCE(lam >= 0.0f && lam <= 1.0f, "MixNormalize: blend of " + SampleName(i) +
                 " must be in [0, 1], got " + std::to_string(lam));
    const int32_t *rw = p + kHeaderLen;
    const int64_t nr = p[kNumRows];
    std::vector<const void *> src(nr);
    for (int64_t r = 0; r < nr; r++) {
      const int32_t *row = rw + kRowLen * r;
      DALI_ENFORCE(row[0] >= 0 && row[0] < n, "MixNormalize: row " + std::to_string(r) + " of " +
                   SampleName(i) + " takes sample " + std::to_string(row[0]) +
                   ", outside the batch of " + std::to_string(n));
      const bool empty = row[7] <= 0 || row[8] <= 0;
      DALI_ENFORCE(Inside(row + 5, H, W) && (empty || (row[3] > 0 && row[4] > 0 &&
                   Inside(row + 1, H, W))),
                   "MixNormalize: row " + std::to_string(r) + " of " + SampleName(i) +
                   " is outside the image");
      src[r] = images.raw_tensor(row[0]);
    }
    // k >= H * W keeps every own pixel: the same as no mask, and no row needs scanning
    const bool masked = p[kMaskWords] > 0 && p[kMaskK] < int64_t{H} * W;
    const void *m = masked ? rw + kRowLen * nr : nullptr;
    return {images.raw_tensor(i), images.raw_tensor(j), lam, rw, nr, std::move(src), m,
            int64_t{H} * W > 65536, p + kMaskK, mirror};
  }

 private:
  std::vector<float> mean_, std_;
  std::string layout_, output_layout_;
  std::vector<int> image_size_;
  int channels_;
  bool normalize_ = true;
  bool has_dtype_ = false;
  DALIDataType dtype_ = DALI_FLOAT;
  // of the current batch (set in SetupImpl)
  DALIDataType in_type_ = DALI_UINT8, out_type_ = DALI_FLOAT;
  bool in_planar_ = false, out_planar_ = true;
  std::vector<Geometry> geom_;
  int num_classes_ = 0;
  float target_offset_ = 0.0f;
  std::vector<int64_t> classes_;  // each sample's class (targets)
};

}  // namespace dali_mix

DALI_REGISTER_OPERATOR(dali_mix__MixNormalize, ::dali_mix::MixNormalize, ::dali::CPU);

DALI_SCHEMA(dali_mix__MixNormalize)
    .DocStr(R"(Mixes a batch as a RandomMix plan says and (optionally) normalises it, in one pass.

Images: uint8 or float32, HWC or CHW (the layout is read from the data; `layout`, when given,
must agree with it). With the images alone: no mixing (every image may have its own size). With
the packed plan (every image of one shape), per sample i with partner perm[i]: the base image
is blend * own + (1 - blend) * partner (Mixup; 1 = own); pixels whose FMix rank (at the position
flipped as flip_y and flip_x say) is >= k are the partner's (FMix); then each paste row (source
sample, source rect, destination rect) writes the source's pixels into its destination rect,
resized by nearest neighbour where the sizes differ (CutMix, ResizeMix, RICAP, Mosaic). With
labels, also the soft targets of the plan's target weights. Then, with mean and std,
(x - mean) / std as float32 (or `dtype`) in
`output_layout` (default CHW); without them the mixed pixels in the input's type and layout
(unless `dtype` / `output_layout` say otherwise; float to uint8 rounds and saturates). Flipped
horizontally where `mirror`.)")
    .NumInput(1, ::dali_mix::kNumTargetInputs)
    .InputDox(0, "images", "TensorList of uint8 or float32, HWC or CHW",
              "the batch (with a plan, every image the same shape)")
    .InputDox(1, "plan", "TensorList of int32 (L,)",
              "each sample's packed plan (dali_mix.native.pack_plan): perm, blend, k, flip_y, "
              "flip_x, target weights (own, partner), R, M; R paste rows (source, sy, sx, sh, "
              "sw, dy, dx, dh, dw; dh or dw 0: none); M words of FMix pixel ranks (0: none)")
    .InputDox(2, "labels", "TensorList of one integer (or float) per sample",
              "class indices in [0, num_classes), for the targets")
    .NumOutput(1)
    .OutputFn([](const ::dali::OpSpec &spec) { return spec.GetArgument<int>("num_classes") > 0 ? 2 : 1; })
    .MakeStateless()
    .AddOptionalArg("mean", "per-channel mean, pixel units (with std: normalise)",
                    std::vector<float>{})
    .AddOptionalArg("std", "per-channel std, pixel units (with mean: normalise)",
                    std::vector<float>{})
    .AddOptionalArg<bool>("normalize",
                          "normalise (default: when mean and std are given); false: mix only",
                          nullptr)
    .AddOptionalArg("mirror", "flip horizontally (per sample)", 0, true)
    .AddOptionalTypeArg("dtype",
                        "output type: FLOAT, FLOAT16 or UINT8 (uint8 images, no normalisation); default "
                        "FLOAT when normalising, else the images' type")
    .AddOptionalArg("layout", "the images' layout, HWC or CHW: checked against the data's "
                    "(used when the data has none)", "")
    .AddOptionalArg("output_layout", "CHW or HWC; default CHW when normalising, else the "
                    "images' layout", "")
    .AddOptionalArg("image_size", "(H, W) every image must have (checked), or empty",
                    std::vector<int>{})
    .AddOptionalArg("channels", "the channels every image must have (checked), or 0 for any", 0)
    .AddOptionalArg("num_classes", "C: with labels, also output (C,) float32 soft targets (the "
                    "plan's target weights); 0: no targets", 0)
    .AddOptionalArg("target_offset", "added to every target value (label smoothing's eps / C)",
                    0.0f);
