// refclient: hearth's own llama.cpp reference client, built against llama.h by tools/reference/build-llama.sh.
// Used only to produce reference fixtures (tests/fixtures/*/); tools/reference/make_fixtures.py drives it and
// writes the JSON. Not part of hearth. One process per model; cases come from a text file, one per line:
//
//   refclient MODEL THREADS tokenize CASES   CASES lines: "<parse_special 0|1> <hex of the UTF-8 text>"
//       out: one line per case: token ids separated by spaces (llama_tokenize, add_special = true, so BOS/EOS
//            only as the vocab's add_bos_token/add_eos_token say)
//   refclient MODEL THREADS greedy CASES     CASES lines: "<max_new> <prompt id> <prompt id> ..."
//       out: one JSON object per case: generated_ids, stopped_at_eog, step_top1_logit, step_top1_minus_top2,
//            first_step_top10 [[id, logit]], generated_text_hex (llama_detokenize, specials rendered)
//   refclient MODEL THREADS logits CASES     CASES lines: "<out.f32 path> <prompt id> ..."
//       out: writes the n_vocab f32 little-endian logits of the LAST prompt position to the path; prints
//            one JSON object per case: top10 [[id, logit, piece_hex]]
//   refclient MODEL THREADS info             out: n_vocab, bos, eos, add_bos, system info
//
// Every case runs in a fresh context: n_ctx 2048, n_batch 2048, n_ubatch 512, f16 K/V cache, flash attention
// "auto", THREADS threads for both batch and single-token decode; the whole prompt is one llama_decode call;
// greedy picks argmax with ties to the lowest id.
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static std::string from_hex(const std::string & h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back((char) strtol(h.substr(i, 2).c_str(), nullptr, 16));
    return out;
}

static std::string to_hex(const std::string & s) {
    static const char * d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) { out.push_back(d[c >> 4]); out.push_back(d[c & 15]); }
    return out;
}

static std::string piece(const llama_vocab * vocab, llama_token t) {
    std::vector<char> buf(256);
    int n = llama_token_to_piece(vocab, t, buf.data(), (int) buf.size(), 0, true);
    if (n < 0) { buf.resize(-n); n = llama_token_to_piece(vocab, t, buf.data(), (int) buf.size(), 0, true); }
    return std::string(buf.data(), n);
}

static llama_context * fresh_context(llama_model * model, int threads) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "context creation failed\n"); exit(1); }
    return ctx;
}

// Sorted (logit desc, id asc) indices of the k best logits.
static std::vector<int> top_k(const float * logits, int n_vocab, int k) {
    std::vector<int> best;
    for (int i = 0; i < n_vocab; i++) {
        size_t pos = best.size();
        while (pos > 0 && logits[best[pos - 1]] < logits[i]) pos--;
        if (pos < (size_t) k) {
            best.insert(best.begin() + pos, i);
            if (best.size() > (size_t) k) best.pop_back();
        }
    }
    return best;
}

static void decode_or_die(llama_context * ctx, std::vector<llama_token> & toks) {
    if (llama_decode(ctx, llama_batch_get_one(toks.data(), (int) toks.size())) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        exit(1);
    }
}

int main(int argc, char ** argv) {
    if (argc < 4) { fprintf(stderr, "usage: refclient MODEL THREADS tokenize|greedy|logits|info [CASES]\n"); return 2; }
    const int threads = atoi(argv[2]);
    const std::string mode = argv[3];
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "model load failed\n"); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    if (mode == "info") {
        printf("{\"n_vocab\": %d, \"bos\": %d, \"eos\": %d, \"add_bos\": %s, \"add_eos\": %s, \"system_info\": \"%s\"}\n",
               n_vocab, llama_vocab_bos(vocab), llama_vocab_eos(vocab),
               llama_vocab_get_add_bos(vocab) ? "true" : "false", llama_vocab_get_add_eos(vocab) ? "true" : "false",
               llama_print_system_info());
        return 0;
    }
    if (argc < 5) { fprintf(stderr, "missing CASES\n"); return 2; }
    std::ifstream in(argv[4]);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        if (mode == "tokenize") {
            int parse_special = 0;
            std::string hex;
            ls >> parse_special >> hex;
            const std::string text = from_hex(hex);
            std::vector<llama_token> ids(text.size() + 16);
            int n = llama_tokenize(vocab, text.data(), (int) text.size(), ids.data(), (int) ids.size(), true, parse_special != 0);
            if (n < 0) { ids.resize(-n); n = llama_tokenize(vocab, text.data(), (int) text.size(), ids.data(), (int) ids.size(), true, parse_special != 0); }
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        } else if (mode == "greedy" || mode == "logits") {
            std::string first;
            ls >> first;
            std::vector<llama_token> prompt;
            int t;
            while (ls >> t) prompt.push_back(t);
            llama_context * ctx = fresh_context(model, threads);
            decode_or_die(ctx, prompt);
            if (mode == "logits") {
                const float * lg = llama_get_logits_ith(ctx, -1);
                FILE * f = fopen(first.c_str(), "wb");
                if (!f || fwrite(lg, sizeof(float), n_vocab, f) != (size_t) n_vocab) { fprintf(stderr, "write failed\n"); return 1; }
                fclose(f);
                printf("{\"top10\": [");
                std::vector<int> best = top_k(lg, n_vocab, 10);
                for (size_t i = 0; i < best.size(); i++)
                    printf("%s[%d, %.9g, \"%s\"]", i ? ", " : "", best[i], lg[best[i]], to_hex(piece(vocab, best[i])).c_str());
                printf("]}\n");
            } else {
                const int max_new = atoi(first.c_str());
                std::vector<llama_token> gen;
                std::vector<float> top1, margin;
                std::string top10_json;
                bool eog = false;
                for (int step = 0; step < max_new; step++) {
                    const float * lg = llama_get_logits_ith(ctx, -1);
                    std::vector<int> best = top_k(lg, n_vocab, 10);
                    if (step == 0) {
                        for (size_t i = 0; i < best.size(); i++) {
                            char b[64];
                            snprintf(b, sizeof b, "%s[%d, %.9g]", i ? ", " : "", best[i], lg[best[i]]);
                            top10_json += b;
                        }
                    }
                    llama_token next = best[0];
                    gen.push_back(next);
                    top1.push_back(lg[best[0]]);
                    margin.push_back(lg[best[0]] - lg[best[1]]);
                    if (llama_vocab_is_eog(vocab, next)) { eog = true; break; }
                    if (step + 1 < max_new) {
                        std::vector<llama_token> one = {next};
                        decode_or_die(ctx, one);
                    }
                }
                std::vector<char> text(gen.size() * 64 + 64);
                int n = llama_detokenize(vocab, gen.data(), (int) gen.size(), text.data(), (int) text.size(), false, true);
                if (n < 0) n = 0;
                printf("{\"generated_ids\": [");
                for (size_t i = 0; i < gen.size(); i++) printf(i ? ", %d" : "%d", gen[i]);
                printf("], \"stopped_at_eog\": %s, \"step_top1_logit\": [", eog ? "true" : "false");
                for (size_t i = 0; i < top1.size(); i++) printf(i ? ", %.9g" : "%.9g", top1[i]);
                printf("], \"step_top1_minus_top2\": [");
                for (size_t i = 0; i < margin.size(); i++) printf(i ? ", %.9g" : "%.9g", margin[i]);
                printf("], \"first_step_top10\": [%s], \"generated_text_hex\": \"%s\"}\n", top10_json.c_str(),
                       to_hex(std::string(text.data(), n)).c_str());
            }
            llama_free(ctx);
        } else {
            fprintf(stderr, "unknown mode %s\n", mode.c_str());
            return 2;
        }
        fflush(stdout);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
