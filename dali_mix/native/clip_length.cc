// dali_mix.ClipLength: each clip's length in samples, after the check that no clip is empty, as
// a DALI CPU operator (in the plugin of dali_mix/native/__init__.py, beside MixNormalize).
//
// Input: decoded audio, (samples,) or (samples, channels) of any type, CPU. Output per sample:
// (1,) int32, the extent of the first axis. A clip of 0 samples stops the batch with an error
// naming the clip's source (the file a reader read it from, DALI's source_info): an empty audio
// file would otherwise train as silence. It replaces a Python check (`fn.python_function`) that
// held the GIL once per batch, and the shape operator the window needs anyway.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_mix {

using ::dali::CPUBackend;
using ::dali::OutputDesc;
using ::dali::Workspace;

class ClipLength : public ::dali::StatelessOperator<CPUBackend> {  // checkpoints: nothing to save
 public:
  explicit ClipLength(const ::dali::OpSpec &spec) : ::dali::StatelessOperator<CPUBackend>(spec) {}

 protected:
  bool SetupImpl(std::vector<OutputDesc> &output_desc, const Workspace &ws) override {
    const auto &audio = ws.Input<CPUBackend>(0);
    int n = audio.num_samples();
    DALI_ENFORCE(n == 0 || audio.sample_dim() >= 1,
                 "clip_length: the audio must have at least one axis (samples), got scalars");
    for (int i = 0; i < n; i++) {
      int64_t len = audio.tensor_shape(i)[0];
      if (len == 0) {
        std::string name = audio.GetMeta(i).GetSourceInfo();
        DALI_FAIL("audio file " + (name.empty() ? std::string("(unnamed)") : name) +
                  " decodes to no samples (an empty clip); remove it, or list such files with "
                  "`dali-mix check-data`");
      }
      DALI_ENFORCE(len <= std::numeric_limits<int32_t>::max(),
                   "clip_length: a clip of " + std::to_string(len) + " samples is longer than int32 counts");
    }
    output_desc.resize(1);
    output_desc[0].type = DALI_INT32;
    output_desc[0].shape = ::dali::uniform_list_shape(n, ::dali::TensorShape<1>{1});
    return true;
  }

  void RunImpl(Workspace &ws) override {
    const auto &audio = ws.Input<CPUBackend>(0);
    auto &out = ws.Output<CPUBackend>(0);
    for (int i = 0; i < audio.num_samples(); i++)
      *out.mutable_tensor<int32_t>(i) = static_cast<int32_t>(audio.tensor_shape(i)[0]);
  }
};

}  // namespace dali_mix

DALI_REGISTER_OPERATOR(dali_mix__ClipLength, ::dali_mix::ClipLength, ::dali::CPU);

DALI_SCHEMA(dali_mix__ClipLength)
    .DocStr(R"(Each clip's length in samples, (1,) int32; a clip of 0 samples stops the batch naming its
source (the file it was read from).)")
    .NumInput(1)
    .InputDox(0, "audio", "TensorList of any type, (samples,) or (samples, channels)", "decoded clips")
    .NumOutput(1)
    .MakeStateless();
