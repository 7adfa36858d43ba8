//go:build integration && throughput

// Throughput benchmark (issue 10): requests per second and p99 latency of a
// real Caddy proxying to N backends through static upstreams, `dynamic k8s`
// and `dynamic nacos`. It is a measurement, not a pass/fail test, and it has
// a build tag of its own, so .ci/run (-tags integration) never runs it. Run
// it with integration/throughput.sh, which sets the tags and a long timeout.
//
// Per size N, one Caddy process (built from the working tree, admin API on)
// serves five sites on ports of their own, each a round-robin reverse_proxy
// over the same N backends (HTTP servers in a network namespace of this
// process, each answering a fixed body of 4 bytes, its name): static
// upstreams, twice (static-aa, an A/A control: its ratio to static is the
// benchmark's noise floor); `dynamic k8s` over a selector-less Service with
// an EndpointSlice written directly to the real API server; `dynamic nacos`
// over ephemeral instances registered with the real Nacos-protocol server;
// and, as a reference for what any dynamic source costs in Caddy, Caddy's
// own `dynamic a` over a DNS server in this process (TCP, answers cached for
// 1h, so no lookups during the runs). wrk (-t2 -c64) runs against each site
// in turn, the order rotating every round; the table has each site's median
// requests per second and median p99 over the rounds, and its ratio to
// static (target for k8s and nacos: >= 0.97).
//
// Every site keeps up to tpIdleConns idle connections per backend (Caddy's
// default is 32): with wrk's 64 connections and one backend, Caddy would
// otherwise open and close backend connections all the time, and their
// TIME_WAIT sockets exhaust the local ports to that one address within
// seconds (tcp_tw_reuse covers loopback only), which fails requests with
// 502 in whichever site runs next.
//
// When k8s's or nacos's ratio is below the target (or
// THROUGHPUT_PROFILE=all: every site), a CPU profile of Caddy is taken from
// the admin API's /debug/pprof/profile during a further wrk run against that
// site, and one against the static site as the baseline; the profiles are
// saved in the output directory, and the CPU shares of our code (the
// source's GetUpstreams) and of Caddy's per-request work on dynamic
// upstreams are printed.
//
// Environment (all optional): THROUGHPUT_SIZES (default "1,10,100"),
// THROUGHPUT_ROUNDS (5), THROUGHPUT_DURATION (10s), THROUGHPUT_PROFILE
// ("auto", "all" or "none"), THROUGHPUT_OUT (the output directory; default
// a new directory under $TMPDIR, kept).
package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

const (
	tpTarget      = 0.97             // the sources' goal, as a ratio of static's req/s
	tpWarmup      = 3 * time.Second  // one unrecorded wrk run per site first
	tpProfileTime = 10 * time.Second // length of a CPU profile
	tpThreads     = 2                // wrk -t
	tpConns       = 64               // wrk -c
	tpIdleConns   = 2 * tpConns      // keep_alive max_idle_conns_per_host of every site
)

// tpSite is one of the three sites of the benchmark's Caddy.
type tpSite struct {
	name    string // static, k8s, nacos
	addr    string // host:port Caddy listens on
	handler string // the reverse_proxy handler (JSON)
}

// tpRun is what one wrk run measured.
type tpRun struct {
	invalid    bool // non-2xx answers or socket errors
	rps        float64
	p99        time.Duration
	requests   int
	non2xx     int
	socketErrs string // wrk's "connect 0, read 0, ..." when it printed any
}

// tpResult is one site's figures at one size.
type tpResult struct {
	size          int
	site          string
	rps, min, max float64
	p99           time.Duration
	invalid       int       // runs left out
	ratio         float64   // median req/s over static's
	paired        []float64 // req/s over static's in the same round, sorted
	p99Ratio      float64
	profile       string // file, if one was taken
	profileNote   string // the CPU shares read from it
}

func TestThroughput(t *testing.T) {
	if raceEnabled {
		t.Skip("the throughput benchmark measures a build without -race")
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk is not installed: the benchmark needs it (apt-get install wrk)")
	}
	sizes := tpSizes(t)
	rounds := tpEnvInt(t, "THROUGHPUT_ROUNDS", 5)
	duration := 10 * time.Second
	if s := os.Getenv("THROUGHPUT_DURATION"); s != "" {
		if duration, err = time.ParseDuration(s); err != nil || duration < time.Second {
			t.Fatalf("THROUGHPUT_DURATION %q: want a duration of 1s or more, such as 10s", s)
		}
	}
	profileMode := os.Getenv("THROUGHPUT_PROFILE")
	if profileMode == "" {
		profileMode = "auto"
	}
	if !slices.Contains([]string{"auto", "all", "none"}, profileMode) {
		t.Fatalf("THROUGHPUT_PROFILE %q: want auto, all or none", profileMode)
	}
	out := os.Getenv("THROUGHPUT_OUT")
	if out == "" {
		if out, err = os.MkdirTemp("", "caddy-discovery-throughput-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	kp := &faultPlane{Kube: sharedKube(t)} // for its manualService and app
	pol := sharedPolaris(t)
	bin := harness.BuildCaddy(t)
	n := harness.NewNetns(t)
	addrs := make([]netip.Addr, slices.Max(sizes))
	for i := range addrs {
		addrs[i] = n.AddAddr(t)
		n.Backend(t, fmt.Sprintf("b%03d", i), addrs[i], 8080)
	}

	note := tpMachineNote(wrk)
	fmt.Printf("throughput: %s\nthroughput: %d rounds x 5 sites x %s per size, wrk -t%d -c%d --latency; output in %s\n",
		note, rounds, duration, tpThreads, tpConns, out)
	var results []tpResult
	for _, size := range sizes {
		t.Run(fmt.Sprintf("backends=%d", size), func(t *testing.T) {
			results = append(results, tpSize(t, tpBench{
				wrk: wrk, bin: bin, out: out, size: size, rounds: rounds, duration: duration,
				profile: profileMode, kp: kp, pol: pol, addrs: addrs[:size],
			})...)
		})
	}
	table := tpTable(results, note, rounds, duration)
	fmt.Print("\n" + table)
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(table), 0o644); err != nil {
		t.Error(err)
	}
}

// tpBench is one size's setup.
type tpBench struct {
	wrk, bin, out string
	size, rounds  int
	duration      time.Duration
	profile       string
	kp            *faultPlane
	pol           *polaris
	addrs         []netip.Addr
}

// tpSize registers the size's backends, starts its Caddy and measures it.
func tpSize(t *testing.T, b tpBench) []tpResult {
	ns := fmt.Sprintf("throughput-%d", b.size)
	b.kp.manualService(t, ns, b.addrs...) // Service web, EndpointSlice web-manual
	reg := newRegistrar(t, b.pol, "")
	for _, a := range b.addrs {
		reg.put(up("DEFAULT_GROUP", ns, a, 8080))
	}

	var static []string
	for _, a := range b.addrs {
		static = append(static, fmt.Sprintf(`{"dial": %q}`, netip.AddrPortFrom(a, 8080)))
	}
	dnsName := fmt.Sprintf("web-%d.throughput.test.", b.size)
	resolver := tpDNS(t, dnsName, b.addrs)
	sites := []tpSite{
		{name: "static", addr: freeAddr(t), handler: tpProxy(`"upstreams": [` + strings.Join(static, ", ") + `]`)},
		{name: "static-aa", addr: freeAddr(t), handler: tpProxy(`"upstreams": [` + strings.Join(static, ", ") + `]`)},
		{name: "k8s", addr: freeAddr(t), handler: tpDynamic(map[string]any{"source": "k8s", "service": ns + "/web:http"})},
		{name: "nacos", addr: freeAddr(t), handler: tpDynamic(map[string]any{"source": "nacos", "service": ns})},
		{name: "caddy-a", addr: freeAddr(t), handler: tpDynamic(map[string]any{"source": "a", "name": dnsName, "port": "8080",
			"refresh": "1h", "versions": map[string]bool{"ipv4": true}, "resolver": map[string]any{"addresses": []string{"tcp/" + resolver}}})},
	}
	var servers []string
	for _, s := range sites {
		servers = append(servers, fmt.Sprintf(`%q: {"listen": [%q], "automatic_https": {"disable": true}, "routes": [{"handle": [%s]}]}`, s.name, s.addr, s.handler))
	}
	admin := freeAddr(t)
	config := filepath.Join(t.TempDir(), "caddy.json")
	cfg := fmt.Sprintf(`{
		"admin": {"listen": %q},
		"logging": {"logs": {"default": {"level": "INFO", "writer": {"output": "stderr"}}}},
		"apps": {"http": {"servers": {%s}}, %s, %s}
	}`, admin, strings.Join(servers, ", "), b.kp.app(),
		fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"]}}}`, b.pol.port))
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := harness.StartProcess(t, b.bin, config, admin)
	defer proc.Stop(t)

	want := make([]string, b.size)
	for i := range want {
		want[i] = fmt.Sprintf("b%03d", i)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, s := range sites {
		harness.Eventually(t, 30*time.Second, func() error {
			seen := map[string]bool{}
			for range 2 * b.size {
				got, err := get(client, "http://"+s.addr+"/", "")
				if err != nil {
					return fmt.Errorf("%s site: %w", s.name, err)
				}
				seen[got] = true
			}
			if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, want) {
				return fmt.Errorf("%s site: %d requests reached %v, want each of the %d backends", s.name, 2*b.size, got, b.size)
			}
			return nil
		})
	}

	logStart := len(proc.Output.String()) // the sources may fail until synced

	measure := func(s tpSite, d time.Duration) tpRun {
		logAt := len(proc.Output.String())
		run, err := wrkOnce(b.wrk, s, d)
		if run.invalid {
			t.Errorf("%v\ncaddy's errors meanwhile:\n%s", err, tpErrorLines(proc.Output.String()[logAt:], 5))
		} else if err != nil {
			t.Fatal(err)
		}
		return run
	}
	for _, s := range sites {
		measure(s, tpWarmup)
	}
	runs := map[string][]tpRun{}
	for r := range b.rounds {
		for i := range sites {
			s := sites[(i+r)%len(sites)]
			run := measure(s, b.duration)
			runs[s.name] = append(runs[s.name], run)
			fmt.Printf("throughput: backends=%d round %d %-9s %9.0f req/s  p99 %v\n", b.size, r+1, s.name, run.rps, run.p99)
		}
	}

	var results []tpResult
	for _, s := range sites {
		var rps, p99 []float64
		invalid := 0
		for _, r := range runs[s.name] {
			if r.invalid {
				invalid++
				continue
			}
			rps, p99 = append(rps, r.rps), append(p99, float64(r.p99))
		}
		if len(rps) == 0 {
			t.Fatalf("no valid run against the %s site", s.name)
		}
		results = append(results, tpResult{
			size: b.size, site: s.name, rps: median(rps), min: slices.Min(rps), max: slices.Max(rps),
			p99: time.Duration(median(p99)), invalid: invalid,
		})
	}
	for i := range results {
		results[i].ratio = results[i].rps / results[0].rps
		results[i].p99Ratio = float64(results[i].p99) / float64(results[0].p99)
		for r, run := range runs[sites[i].name] {
			if base := runs["static"][r]; !run.invalid && !base.invalid {
				results[i].paired = append(results[i].paired, run.rps/base.rps)
			}
		}
		slices.Sort(results[i].paired)
	}

	var slow []int
	for i, r := range results[1:] {
		ours := r.site == "k8s" || r.site == "nacos"
		if b.profile == "all" && r.site != "static-aa" || b.profile == "auto" && ours && r.ratio < tpTarget {
			slow = append(slow, i+1)
		}
	}
	if len(slow) > 0 {
		slow = append([]int{0}, slow...) // static, the baseline
	}
	for _, i := range slow {
		file := filepath.Join(b.out, fmt.Sprintf("cpu-%d-%s.pprof", b.size, sites[i].name))
		results[i].profile = file
		results[i].profileNote = tpProfile(t, b, proc, sites[i], file)
	}

	if log := proc.Output.String()[logStart:]; strings.Contains(log, "failed getting dynamic upstreams") || strings.Contains(log, "panic") {
		t.Errorf("caddy's log shows failed dynamic upstreams or a panic under load: the figures are not valid:\n%s", log)
	}
	return results
}

// wrkOnce runs wrk against a site for d. A run with non-2xx answers or
// socket errors is an error, and marked invalid: its figures are not those
// of the site.
func wrkOnce(wrk string, s tpSite, d time.Duration) (tpRun, error) {
	cmd := exec.Command(wrk, fmt.Sprintf("-t%d", tpThreads), fmt.Sprintf("-c%d", tpConns),
		fmt.Sprintf("-d%ds", int(d.Round(time.Second).Seconds())), "--latency", "http://"+s.addr+"/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return tpRun{}, fmt.Errorf("wrk against the %s site: %w\n%s", s.name, err, out)
	}
	run, err := parseWrk(string(out))
	if err != nil {
		return run, fmt.Errorf("wrk against the %s site: %w\n%s", s.name, err, out)
	}
	if run.non2xx > 0 || run.socketErrs != "" {
		run.invalid = true
		return run, fmt.Errorf("wrk against the %s site: %d non-2xx answers, socket errors %q in %d requests: the run is not valid\n%s",
			s.name, run.non2xx, run.socketErrs, run.requests, out)
	}
	return run, nil
}

// parseWrk reads wrk's --latency output.
func parseWrk(out string) (tpRun, error) {
	var r tpRun
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		var err error
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, err = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "99%":
			r.p99, err = time.ParseDuration(f[1])
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			r.requests, err = strconv.Atoi(f[0])
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			r.non2xx, err = strconv.Atoi(f[len(f)-1])
		case strings.HasPrefix(line, "Socket errors:"):
			r.socketErrs = strings.TrimPrefix(line, "Socket errors: ")
		}
		if err != nil {
			return r, fmt.Errorf("reading %q: %w", line, err)
		}
	}
	if r.rps == 0 || r.p99 == 0 || r.requests == 0 {
		return r, fmt.Errorf("no Requests/sec, 99%% latency or request count in wrk's output")
	}
	return r, nil
}

// tpProfile takes a CPU profile of Caddy during a wrk run against the site,
// saves it in file, and returns the CPU shares read from it with pprof.
func tpProfile(t *testing.T, b tpBench, proc *harness.Process, s tpSite, file string) string {
	t.Helper()
	type result struct {
		run tpRun
		err error
	}
	done := make(chan result, 1)
	go func() {
		run, err := wrkOnce(b.wrk, s, tpProfileTime+4*time.Second)
		done <- result{run, err}
	}()
	time.Sleep(2 * time.Second)
	code, body, err := proc.Request(http.MethodGet, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(tpProfileTime.Seconds())), "")
	w := <-done
	if w.err != nil {
		t.Errorf("profiling caddy against the %s site: %v", s.name, w.err)
		return ""
	}
	run := w.run
	if err != nil || code != http.StatusOK {
		t.Errorf("profiling caddy against the %s site: status %d, %v", s.name, code, err)
		return ""
	}
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Error(err)
		return ""
	}
	// The shares of the profile's samples whose stacks hold: our code;
	// Caddy's per-request work on dynamic upstreams (GetUpstreams plus
	// provisionUpstream for each upstream it returned); the garbage
	// collector's background work; the whole reverse_proxy handler.
	var notes []string
	var cpuPerReq time.Duration
	for _, f := range []struct{ name, focus string }{
		{"ours", `caddy-discovery/caddy-discovery/`},
		{"dynamic upstreams (GetUpstreams+provisionUpstream)", `reverseproxy\.\(?\*?Handler\)?\.provisionUpstream|GetUpstreams`},
		{"provisionUpstream", `reverseproxy\.\(?\*?Handler\)?\.provisionUpstream`},
		{"GC workers", `runtime\.gcBgMarkWorker`},
		{"reverse_proxy", `reverseproxy\.\(\*Handler\)\.ServeHTTP`},
	} {
		focus, total, err := pprofShare(b.bin, file, f.focus)
		if err != nil {
			t.Logf("reading the profile %s: %v", file, err)
			return ""
		}
		// CPU time per request: the profile's samples over the requests
		// served meanwhile (wrk's rate over the whole run).
		reqs := run.rps * tpProfileTime.Seconds()
		cpuPerReq = time.Duration(float64(total) / reqs)
		notes = append(notes, fmt.Sprintf("%s %.2f%% (%.2f µs/request)", f.name, 100*float64(focus)/float64(total),
			float64(focus)/reqs/float64(time.Microsecond)))
	}
	note := fmt.Sprintf("%.0f req/s while profiled, Caddy CPU %.1f µs/request; %s", run.rps,
		float64(cpuPerReq)/float64(time.Microsecond), strings.Join(notes, ", "))
	fmt.Printf("throughput: backends=%d %s profile %s: %s\n", b.size, s.name, file, note)
	return note
}

var (
	pprofTotal   = regexp.MustCompile(`Total samples = ([^ ]+)`)
	pprofShowing = regexp.MustCompile(`Showing nodes accounting for ([^,]+),`)
)

// pprofShare reads from a CPU profile the time of the samples whose stacks
// match focus, and the time of all samples.
func pprofShare(bin, file, focus string) (focused, total time.Duration, err error) {
	// every node, however small: the header's sum is then the focus's total
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodefraction=0", "-focus="+focus, bin, file).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	mt, mf := pprofTotal.FindSubmatch(out), pprofShowing.FindSubmatch(out)
	if mt == nil || mf == nil && !strings.Contains(string(out), "matched no samples") {
		return 0, 0, fmt.Errorf("no totals in go tool pprof's output:\n%s", out)
	}
	if total, err = time.ParseDuration(string(mt[1])); err == nil && mf != nil {
		focused, err = time.ParseDuration(string(mf[1]))
	}
	return focused, total, err
}

// tpProxy is a round-robin reverse_proxy handler with the given upstreams
// field(s) (JSON).
func tpProxy(upstreams string) string {
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, `+
		`"transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": %d}}, %s}`, tpIdleConns, upstreams)
}

// tpDynamic is tpProxy over a dynamic upstream source.
func tpDynamic(source map[string]any) string {
	b, _ := json.Marshal(source)
	return tpProxy(`"dynamic_upstreams": ` + string(b))
}

// tpDNS serves, over TCP on loopback, the A records of name: addrs (and no
// AAAA records); it returns the server's address and stops at cleanup.
func tpDNS(t *testing.T, name string, addrs []netip.Addr) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		switch {
		case len(q.Question) != 1 || q.Question[0].Name != name:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			for _, a := range addrs {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
					A:   a.AsSlice(),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	// over TCP: 100 records do not fit a UDP answer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: handler}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// tpErrorLines is up to n of the error lines of a Caddy log.
func tpErrorLines(log string, n int) string {
	var lines []string
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, `"level":"error"`) && len(lines) < n {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

// tpTable is the results as a markdown table with its notes.
func tpTable(results []tpResult, note string, rounds int, d time.Duration) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s\n\n", note)
	fmt.Fprintf(&s, "Medians of %d rounds of wrk -t%d -c%d -d%s --latency per site, the sites in turn (order rotating per round); "+
		"round_robin and max_idle_conns_per_host %d on every site. static-aa is a second, identical static site: its ratio "+
		"to static is the noise floor. caddy-a is Caddy's own `dynamic a` (answers cached), for reference. \"per round\" is "+
		"the median (and range) of the ratios of runs in the same round.\n\n",
		rounds, tpThreads, tpConns, d, tpIdleConns)
	s.WriteString("| backends | site | req/s (median) | req/s (min–max) | p99 (median) | req/s / static | per round | p99 / static |\n")
	s.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|\n")
	invalid := 0
	for _, r := range results {
		paired := "—"
		if p := r.paired; len(p) > 0 {
			paired = fmt.Sprintf("%.3f (%.2f–%.2f)", median(slices.Clone(p)), p[0], p[len(p)-1])
		}
		fmt.Fprintf(&s, "| %d | %s | %.0f | %.0f–%.0f | %s | %.3f | %s | %.2f |\n",
			r.size, r.site, r.rps, r.min, r.max, tpDuration(r.p99), r.ratio, paired, r.p99Ratio)
		invalid += r.invalid
	}
	if invalid > 0 {
		fmt.Fprintf(&s, "\n%d runs had non-2xx answers or socket errors and are left out (see the log).\n", invalid)
	}
	var profiled []tpResult
	for _, r := range results {
		if r.profile != "" {
			profiled = append(profiled, r)
		}
	}
	if len(profiled) > 0 {
		s.WriteString("\nCPU profiles of Caddy (/debug/pprof/profile, 10 s under the same wrk load):\n\n")
		for _, r := range profiled {
			fmt.Fprintf(&s, "- backends=%d %s: %s (%s)\n", r.size, r.site, r.profileNote, r.profile)
		}
	}
	return s.String()
}

func tpDuration(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// tpMachineNote describes the machine and wrk.
func tpMachineNote(wrk string) string {
	wrkVersion, _ := exec.Command(wrk, "-v").CombinedOutput() // exits 1 after printing it
	wv := strings.Fields(string(wrkVersion))
	version := "wrk"
	if len(wv) > 1 {
		version = wv[0] + " " + wv[1]
	}
	return machineNote() + "; shared by wrk, Caddy and the backends (nothing pinned); " + version
}

func tpSizes(t *testing.T) []int {
	s := os.Getenv("THROUGHPUT_SIZES")
	if s == "" {
		s = "1,10,100"
	}
	var sizes []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 250 {
			t.Fatalf("THROUGHPUT_SIZES %q: want backend counts from 1 to 250, comma-separated, such as 1,10,100", s)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

func tpEnvInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s %q: want a positive integer", name, s)
	}
	return n
}

// median of xs (not empty); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
