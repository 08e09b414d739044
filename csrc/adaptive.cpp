#include "adaptive.h"

#include <algorithm>
#include <cmath>

namespace llama_mtp {

// The most of plain decoding's time that shadow probes may take while drafting does not pay.
constexpr double kProbeShare = 0.025;

double expected_tokens(const std::vector<double>& p, int k) {
    double total = 1.0;
    double all_accepted = 1.0;
    for (int i = 0; i < k && i < static_cast<int>(p.size()); ++i) {
        all_accepted *= p[static_cast<size_t>(i)];
        total += all_accepted;
    }
    return total;
}

int best_draft_length(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                      double draft_seconds, int other_rows, int n_max) {
    int best = 0;
    double best_rate = -1.0;
    for (int k = 0; k <= n_max; ++k) {
        const double t = step_seconds(other_rows + k + 1) + (k > 0 ? draft_seconds : 0.0);
        if (!(t > 0.0)) return n_max;  // nothing measured yet: draft, and measure
        const double rate = expected_tokens(p, k) / t;
        // ties go to the shorter draft (less work for the same gain)
        if (rate > best_rate * (1.0 + 1e-9)) {
            best_rate = rate;
            best = k;
        }
    }
    return best;
}

int best_draft_depth(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                     const std::function<double(int depth)>& draft_seconds, int max_depth) {
    const double plain_t = step_seconds(1);
    if (!(plain_t > 0.0)) return max_depth;
    int best = 0;
    double best_rate = 1.0 / plain_t;
    for (int d = 1; d <= max_depth; ++d) {
        const double dt = draft_seconds(d);
        if (!(dt > 0.0)) continue;
        for (int k = 1; k <= d; ++k) {
            const double t = step_seconds(k + 1) + dt;
            if (!(t > 0.0)) continue;
            const double rate = expected_tokens(p, k) / t;
            if (rate > best_rate * (1.0 + 1e-9)) {
                best_rate = rate;
                best = d;
            }
        }
    }
    return best;
}

AcceptanceEstimate::AcceptanceEstimate(int n_max, double prior, double weight)
    : p_(static_cast<size_t>(std::max(0, n_max)), prior), weight_(weight) {}

void AcceptanceEstimate::update(int drafted, int accepted) {
    // Position i (1-based) was tested when the i-1 before it were accepted.
    for (int i = 1; i <= drafted && i <= static_cast<int>(p_.size()); ++i) {
        if (i > accepted + 1) break;
        const double outcome = i <= accepted ? 1.0 : 0.0;
        auto& v = p_[static_cast<size_t>(i - 1)];
        v += weight_ * (outcome - v);
    }
}

namespace {

void add_ewma(std::vector<double>& table, int index, double value, double weight) {
    if (index < 0 || !(value > 0.0)) return;
    if (static_cast<size_t>(index) >= table.size()) table.resize(static_cast<size_t>(index) + 1, 0.0);
    double& v = table[static_cast<size_t>(index)];
    v = v > 0.0 ? v + weight * (value - v) : value;
}

}  // namespace

void StepCosts::add(int rows, double seconds) { add_ewma(seconds_, rows, seconds, weight_); }

bool StepCosts::known(int rows) const {
    return rows >= 0 && static_cast<size_t>(rows) < seconds_.size() && seconds_[static_cast<size_t>(rows)] > 0.0;
}

double StepCosts::seconds(int rows) const {
    if (known(rows)) return seconds_[static_cast<size_t>(rows)];
    // least-squares line through the row counts seen
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t r = 0; r < seconds_.size(); ++r) {
        if (seconds_[r] <= 0.0) continue;
        const double x = static_cast<double>(r), y = seconds_[r];
        n += 1;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    if (n == 0) return 0.0;
    if (n == 1) return sy;  // one point: assume a flat cost
    const double den = n * sxx - sx * sx;
    const double slope = den != 0.0 ? std::max(0.0, (n * sxy - sx * sy) / den) : 0.0;
    const double intercept = (sy - slope * sx) / n;
    return std::max(intercept + slope * rows, 1e-9);
}

void DraftCosts::add(int depth, double seconds) { add_ewma(seconds_, depth, seconds, weight_); }

bool DraftCosts::known(int depth) const {
    return depth >= 0 && static_cast<size_t>(depth) < seconds_.size() && seconds_[static_cast<size_t>(depth)] > 0.0;
}

double DraftCosts::seconds(int depth) const {
    if (known(depth)) return seconds_[static_cast<size_t>(depth)];
    // the seen depths' cost per step, scaled
    double per_step = 0.0;
    int n = 0;
    for (size_t d = 1; d < seconds_.size(); ++d) {
        if (seconds_[d] <= 0.0) continue;
        per_step += seconds_[d] / static_cast<double>(d);
        ++n;
    }
    return n > 0 ? per_step / n * depth : 0.0;
}

DraftController::DraftController(int n_max) : acceptance_(n_max), n_max_(n_max) {}

void DraftController::seed(const AcceptanceEstimate& from) {
    AcceptanceEstimate seeded(n_max_);
    for (int i = 0; i < n_max_ && i < static_cast<int>(from.p().size()); ++i) {
        seeded.set(i, from.p()[static_cast<size_t>(i)]);
    }
    acceptance_ = seeded;
}

DraftController::Choice DraftController::choose(const StepCosts& steps, const DraftCosts& drafts, int depth,
                                                int other_rows) {
    const int limit = std::min(n_max_, depth);
    if (limit <= 0) return {};
    if (!steps.known(other_rows + 1) && !tried_plain_) {
        tried_plain_ = true;  // the cost of a plain step must be measured once to compare
        return {};
    }
    const int k = best_draft_length(
        acceptance_.p(), [&](int rows) { return steps.seconds(rows); }, drafts.seconds(depth), other_rows, limit);
    if (k > 0) {
        plain_steps_ = 0;
        probe_interval_ = 4;
        drop_probe();
        return {k, false};
    }
    if (!probing() && ++plain_steps_ >= probe_interval_) {
        plain_steps_ = 0;
        // Probes cost a drafting pass each: the interval doubles while they fail, up to where
        // they cost at most ~2.5 % of plain decoding (so cheap drafts are probed often and a
        // change in the text is noticed within a few tokens), and never past 32 steps.
        const double plain = steps.seconds(other_rows + 1);
        const double ceiling = plain > 0 ? drafts.seconds(depth) / (kProbeShare * plain) : 32.0;
        const int max_interval = std::clamp(static_cast<int>(std::ceil(ceiling)), 4, 32);
        probe_interval_ = std::min(std::max(probe_interval_ * 2, 4), max_interval);
        return {limit, true};  // does drafting pay again?
    }
    return {};
}

void DraftController::start_probe(std::vector<int32_t> draft) {
    probe_draft_ = std::move(draft);
    probe_matched_ = 0;
}

std::pair<int, int> DraftController::observe(int32_t token) {
    if (!probing()) return {0, 0};
    if (token == probe_draft_[probe_matched_]) {
        if (++probe_matched_ < probe_draft_.size()) return {0, 0};
    }
    const std::pair<int, int> outcome{static_cast<int>(probe_draft_.size()), static_cast<int>(probe_matched_)};
    acceptance_.update(outcome.first, outcome.second);
    drop_probe();
    // a probe accepted whole: drafting may pay again -- keep probing every step until the
    // estimate says so (or a probe fails)
    if (outcome.second == outcome.first) {
        probe_interval_ = 1;
        plain_steps_ = 0;
    }
    return outcome;
}

}  // namespace llama_mtp
