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

double draft_rate(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                  double draft_seconds, int other_rows, int k) {
    const double t = step_seconds(other_rows + k + 1) + (k > 0 ? draft_seconds : 0.0);
    return t > 0.0 ? expected_tokens(p, k) / t : 0.0;
}

int best_draft_length(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                      double draft_seconds, int other_rows, int n_max) {
    int best = 0;
    double best_rate = -1.0;
    for (int k = 0; k <= n_max; ++k) {
        const double rate = draft_rate(p, step_seconds, draft_seconds, other_rows, k);
        if (!(rate > 0.0)) return n_max;  // nothing measured yet: draft, and measure
        // ties go to the shorter draft (less work for the same gain)
        if (rate > best_rate * (1.0 + 1e-9)) {
            best_rate = rate;
            best = k;
        }
    }
    return best;
}

std::vector<double> draft_depth_rates(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                                      const std::function<double(int depth)>& draft_seconds,
                                      double plain_step_seconds, int max_depth) {
    std::vector<double> rates(static_cast<size_t>(std::max(0, max_depth)) + 1, 0.0);
    if (plain_step_seconds > 0.0) rates[0] = 1.0 / plain_step_seconds;
    for (int d = 1; d <= max_depth; ++d) {
        const double dt = draft_seconds(d);
        if (!(dt > 0.0)) continue;
        for (int k = 1; k <= d; ++k) {
            rates[static_cast<size_t>(d)] = std::max(rates[static_cast<size_t>(d)], draft_rate(p, step_seconds, dt, 0, k));
        }
    }
    return rates;
}

int best_draft_depth(const std::vector<double>& rates) {
    const int max_depth = static_cast<int>(rates.size()) - 1;
    if (max_depth <= 0 || !(rates[0] > 0.0)) return std::max(0, max_depth);  // plain unmeasured: measure
    int best = 0;
    for (int d = 1; d <= max_depth; ++d) {
        // ties go to the shallower depth (less work for the same gain)
        if (rates[static_cast<size_t>(d)] > rates[static_cast<size_t>(best)] * (1.0 + 1e-9)) best = d;
    }
    return best;
}

AcceptanceEstimate::AcceptanceEstimate(int n_max, double prior, double weight)
    : p_(static_cast<size_t>(std::max(0, n_max)), prior), tested_(p_.size(), 0), weight_(weight) {}

void AcceptanceEstimate::set(int position, double p) {
    p_[static_cast<size_t>(position)] = p;
    tested_[static_cast<size_t>(position)] = static_cast<int>(std::ceil(1.0 / weight_));
}

void AcceptanceEstimate::update(int drafted, int accepted) {
    // Position i (1-based) was tested when the i-1 before it were accepted.
    for (int i = 1; i <= drafted && i <= static_cast<int>(p_.size()); ++i) {
        if (i > accepted + 1) break;
        const double outcome = i <= accepted ? 1.0 : 0.0;
        auto& v = p_[static_cast<size_t>(i - 1)];
        auto& n = tested_[static_cast<size_t>(i - 1)];
        if (static_cast<double>(n) < 1.0 / weight_) ++n;
        // the mean of the prior and the n tests, until that weighs them less than `weight` each
        v += std::max(weight_, 1.0 / (n + 1)) * (outcome - v);
    }
}

namespace {

// The mean of the lowest three quarters: the slowest runs are the interrupted ones.
double trimmed_mean(std::vector<double> values) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const size_t kept = (values.size() * 3 + 3) / 4;
    double sum = 0.0;
    for (size_t i = 0; i < kept; ++i) sum += values[i];
    return sum / static_cast<double>(kept);
}

template <typename T>
void push_ring(std::vector<T>& ring, size_t& next, T value, size_t capacity) {
    if (ring.size() < capacity) {
        ring.push_back(std::move(value));
    } else {
        ring[next] = std::move(value);
        next = (next + 1) % capacity;
    }
}

}  // namespace

void CostTable::add(int size, double seconds) {
    if (size < 0 || !(seconds > 0.0)) return;
    if (static_cast<size_t>(size) >= sizes_.size()) {
        sizes_.resize(static_cast<size_t>(size) + 1);
        pairs_.resize(sizes_.size());
        for (auto& row : pairs_) row.resize(sizes_.size());
    }
    // Pair this measurement with the latest of every other size taken in the same spell.
    for (size_t q = 0; q < sizes_.size(); ++q) {
        const Recent& other = sizes_[q];
        if (static_cast<int>(q) == size || other.samples.empty() || now_ - other.last.at > kPairTicks) continue;
        const auto lo = std::min(static_cast<size_t>(size), q), hi = std::max(static_cast<size_t>(size), q);
        const double ratio = lo == static_cast<size_t>(size) ? seconds / other.last.seconds : other.last.seconds / seconds;
        Ratios& pair = pairs_[lo][hi];
        push_ring(pair.values, pair.next, ratio, kWindow);
    }
    Recent& r = sizes_[static_cast<size_t>(size)];
    r.last = {seconds, now_};
    push_ring(r.samples, r.next, r.last, kWindow);
}

int CostTable::reference() const {
    int best = -1, best_count = 0;
    uint64_t best_last = 0;
    for (size_t q = 0; q < sizes_.size(); ++q) {
        int count = 0;
        for (const Sample& s : sizes_[q].samples) count += now_ - s.at <= kRecentTicks;
        if (count < kReferenceSamples) continue;
        if (count > best_count || (count == best_count && sizes_[q].last.at > best_last)) {
            best = static_cast<int>(q);
            best_count = count;
            best_last = sizes_[q].last.at;
        }
    }
    return best;
}

double CostTable::recent_cost(int size) const {
    std::vector<double> recent;
    for (const Sample& s : sizes_[static_cast<size_t>(size)].samples) {
        if (now_ - s.at <= kRecentTicks) recent.push_back(s.seconds);
    }
    return trimmed_mean(std::move(recent));
}

double CostTable::ratio(int size, int ref) const {
    if (size < 0 || ref < 0 || static_cast<size_t>(std::max(size, ref)) >= sizes_.size()) return 0.0;
    if (size == ref) return 1.0;
    std::vector<double> values = pairs_[static_cast<size_t>(std::min(size, ref))][static_cast<size_t>(std::max(size, ref))].values;
    if (values.empty()) return 0.0;
    // the median: a pair with one interrupted measurement is far off either way
    const size_t mid = values.size() / 2;
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid), values.end());
    double median = values[mid];
    if (values.size() % 2 == 0) {
        median = (median + *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid))) / 2.0;
    }
    return size < ref ? median : 1.0 / median;
}

double CostTable::level(int size) const {
    const int ref = reference();
    if (ref >= 0) {
        const double r = ratio(size, ref);
        if (r > 0.0) return r * recent_cost(ref);
    }
    return measured(size);
}

uint64_t CostTable::age(int size) const {
    if (!known(size)) return UINT64_MAX;
    uint64_t last = 0;
    for (const Sample& s : sizes_[static_cast<size_t>(size)].samples) last = std::max(last, s.at);
    return now_ - last;
}

int CostTable::samples(int size) const {
    if (size < 0 || static_cast<size_t>(size) >= sizes_.size()) return 0;
    int n = 0;
    for (const Sample& s : sizes_[static_cast<size_t>(size)].samples) n += now_ - s.at <= kStale;
    return n;
}

bool CostTable::known(int size) const {
    return size >= 0 && static_cast<size_t>(size) < sizes_.size() && !sizes_[static_cast<size_t>(size)].samples.empty();
}

double CostTable::measured(int size) const {
    if (size < 0 || static_cast<size_t>(size) >= sizes_.size()) return 0.0;
    std::vector<double> recent;
    for (const Sample& s : sizes_[static_cast<size_t>(size)].samples) {
        if (now_ - s.at <= kStale) recent.push_back(s.seconds);
    }
    if (recent.empty()) {  // none lately: what there is
        for (const Sample& s : sizes_[static_cast<size_t>(size)].samples) recent.push_back(s.seconds);
    }
    return trimmed_mean(std::move(recent));
}

double StepCosts::seconds(int rows) const {
    if (known(rows)) return level(rows);
    // least-squares line through the row counts seen
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t r = 0; r < sizes_.size(); ++r) {
        if (!known(static_cast<int>(r))) continue;
        const double x = static_cast<double>(r), y = level(static_cast<int>(r));
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

double DraftCosts::seconds(int depth) const {
    const int ref = reference();
    if (ref > 0) return depth == ref ? recent_cost(ref) : recent_cost(ref) / ref * depth;
    if (known(depth)) return measured(depth);
    // the seen depths' cost per step, scaled
    double per_step = 0.0;
    int n = 0;
    for (size_t d = 1; d < sizes_.size(); ++d) {
        if (!known(static_cast<int>(d))) continue;
        per_step += measured(static_cast<int>(d)) / static_cast<double>(d);
        ++n;
    }
    return n > 0 ? per_step / n * depth : 0.0;
}

double FollowedSteps::seconds(int rows) const {
    const double step = steps_->seconds(rows);
    return step > 0.0 ? step + follow_->seconds(rows) : 0.0;
}

DraftController::DraftController(int n_max)
    : n_max_(n_max), explored_(static_cast<size_t>(std::max(0, n_max)) + 1, 0) {
    // A sequence starts from an estimate (the engine's, seed()), not from nothing: its values
    // weigh as recent verifications from the first step; until seeded, the prior's.
    seed(AcceptanceEstimate(n_max));
}

void DraftController::seed(const AcceptanceEstimate& from) {
    AcceptanceEstimate seeded(n_max_, AcceptanceEstimate::kPrior, kAcceptanceWeight);
    for (int i = 0; i < n_max_ && i < static_cast<int>(from.p().size()); ++i) {
        seeded.set(i, from.p()[static_cast<size_t>(i)]);
    }
    acceptance_ = seeded;
}

DraftController::Choice DraftController::choose(const FollowedSteps& steps, const DraftCosts& drafts, int depth,
                                                int other_rows) {
    const int limit = std::min(n_max_, depth);
    if (limit <= 0) return {};
    // Costs are compared only once measured: a draft length whose step was seldom timed (lately)
    // is tried, a bounded number of times per sequence -- the lengths in turn, so that their costs
    // are measured in the same spell of the machine and paired (CostTable::ratio).
    int untried = -1;
    for (int k = 0; k <= limit; ++k) {
        const int tries = explored_[static_cast<size_t>(k)];
        if (steps.samples(other_rows + k + 1) < kTrustedSamples && tries < kTrustedSamples + 1 &&
            (untried < 0 || tries < explored_[static_cast<size_t>(untried)])) {
            untried = k;
        }
    }
    if (untried >= 0) {
        explored_[static_cast<size_t>(untried)] += 1;
        last_length_ = untried;
        return {untried, false};
    }
    auto step_seconds = [&](int rows) { return steps.seconds(rows); };
    const double draft_seconds = drafts.seconds(depth);
    const auto& p = acceptance_.p();
    int k = best_draft_length(p, step_seconds, draft_seconds, other_rows, limit);
    if (k == 0 && last_length_ > 0) {
        // Drafting until now: stop only when plain decoding is clearly faster.
        int best = 1;
        double best_rate = draft_rate(p, step_seconds, draft_seconds, other_rows, 1);
        for (int j = 2; j <= limit; ++j) {
            const double rate = draft_rate(p, step_seconds, draft_seconds, other_rows, j);
            if (rate > best_rate) {
                best = j;
                best_rate = rate;
            }
        }
        if (draft_rate(p, step_seconds, draft_seconds, other_rows, 0) < (1.0 + kLeaveMargin) * best_rate) k = best;
    }
    last_length_ = k;
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
        const double ceiling = plain > 0 ? draft_seconds / (kProbeShare * plain) : 32.0;
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
