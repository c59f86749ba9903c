//! End-of-call quality summary and the ITU-T G.107 E-model for G.711.
//!
//! # Contract
//!
//! At call end the engine fills a [`CallStats`] from the channel's counters
//! (RTP sent/received, [`super::seq::SourceSeq`], jitter, RTCP round trip,
//! jitter-buffer depth, PLC counters) and calls [`CallQuality::from_stats`];
//! the resulting plain `Copy` value goes to the control plane in the
//! end-of-call event. No allocation; floating point only.
//!
//! # E-model (G.107 (06/2015) §3, Table 1 defaults)
//!
//! `R = Ro − Is − Id − Ie,eff + A`, every term computed from the default
//! parameters, so that a connection without delay or loss gives
//! `R = 93.2` (G.107 §3, note on the default values). Only the parameters a
//! gateway measures change:
//!
//! - delay: `Ta` = mouth-to-ear one-way delay, the sum of RTT/2, the
//!   jitter-buffer depth, the packetisation and the PLC look-back; the echo
//!   path is taken as the same
//!   (`T = Ta`, `Tr = 2 Ta`, G.107 §3.3 with echo cancelled to the default
//!   TELR 65 dB);
//! - loss: `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)` (§3.5) with
//!   the G.113 Appendix I values for G.711: `Ie = 0`, `Bpl = 25.1` with
//!   G.711 Appendix I PLC, `4.3` without; `BurstR` from the mean length of
//!   the loss bursts (`BurstR = (1 − p) · L` for the 2-state Markov model of
//!   §3.5, never below 1 here);
//! - MOS from R: G.107 Annex B (B-4).

/// G.107 Table 1 default values (the parameters a gateway cannot measure).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EModel {
    /// Send loudness rating, dB.
    pub slr: f64,
    /// Receive loudness rating, dB.
    pub rlr: f64,
    /// Sidetone masking rating, dB.
    pub stmr: f64,
    /// D-value of telephone, send / receive side.
    pub ds: f64,
    pub dr: f64,
    /// Talker echo loudness rating, dB.
    pub telr: f64,
    /// Weighted echo path loss, dB.
    pub wepl: f64,
    /// Quantising distortion units.
    pub qdu: f64,
    /// Circuit noise referred to 0 dBr, dBm0p.
    pub nc: f64,
    /// Noise floor at the receive side, dBmp.
    pub nfor: f64,
    /// Room noise at send / receive side, dB(A).
    pub ps: f64,
    pub pr: f64,
    /// Advantage factor.
    pub a: f64,
    /// Delay sensitivity (§3.3: mT, sT).
    pub mt_ms: f64,
    pub st: f64,
}

impl Default for EModel {
    fn default() -> Self {
        EModel {
            slr: 8.0,
            rlr: 2.0,
            stmr: 15.0,
            ds: 3.0,
            dr: 3.0,
            telr: 65.0,
            wepl: 110.0,
            qdu: 1.0,
            nc: -70.0,
            nfor: -64.0,
            ps: 35.0,
            pr: 35.0,
            a: 0.0,
            mt_ms: 100.0,
            st: 1.0,
        }
    }
}

/// Codec impairment values (G.113 Appendix I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor at zero loss.
    pub ie: f64,
    /// Packet-loss robustness factor.
    pub bpl: f64,
}

/// G.711 with G.711 Appendix I concealment (G.113 Appendix I, Table I.3).
pub const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
/// G.711 without concealment (G.113 Appendix I, Table I.3).
pub const G711_NO_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };

/// What the connection measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Absolute (mouth-to-ear) one-way delay, ms.
    pub ta_ms: f64,
    /// Mean one-way delay of the echo path, ms.
    pub t_ms: f64,
    /// Round-trip delay of a 4-wire loop, ms.
    pub tr_ms: f64,
    /// Packet loss, percent.
    pub ppl_percent: f64,
    /// Burst ratio (1 for random loss).
    pub burst_r: f64,
    pub codec: CodecImpairment,
}

impl Conditions {
    /// Delay `ta_ms` mouth to ear, the echo path the same (T = Ta,
    /// Tr = 2 Ta), loss `ppl_percent` with burst ratio `burst_r`.
    pub fn new(ta_ms: f64, ppl_percent: f64, burst_r: f64, codec: CodecImpairment) -> Self {
        Conditions {
            ta_ms,
            t_ms: ta_ms,
            tr_ms: 2.0 * ta_ms,
            ppl_percent,
            burst_r,
            codec,
        }
    }
}

/// The terms of the E-model, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RFactor {
    pub ro: f64,
    pub is: f64,
    pub id: f64,
    pub ie_eff: f64,
    pub r: f64,
}

fn lg(x: f64) -> f64 {
    x.log10()
}

fn p10(x: f64) -> f64 {
    10f64.powf(x / 10.0)
}

impl EModel {
    /// G.107 §3.2: the noise sum `No` and the basic signal-to-noise ratio
    /// `Ro = 15 − 1.5 (SLR + No)`.
    fn ro(&self) -> (f64, f64) {
        let olr = self.slr + self.rlr;
        let lstr = self.stmr + self.dr;
        let nos =
            self.ps - self.slr - self.ds - 100.0 + 0.004 * (self.ps - olr - self.ds - 14.0).powi(2);
        let pre = self.pr + 10.0 * lg(1.0 + p10(10.0 - lstr));
        let nor = self.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
        let nfo = self.nfor + self.rlr;
        let no = 10.0 * lg(p10(self.nc) + p10(nos) + p10(nor) + p10(nfo));
        (15.0 - 1.5 * (self.slr + no), no)
    }

    /// G.107 §3.3 (Is): `Iolr + Ist + Iq`.
    fn is(&self, ro: f64, no: f64, t_ms: f64) -> f64 {
        let olr = self.slr + self.rlr;
        let xolr = olr + 0.2 * (64.0 + no - self.rlr);
        let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
        let stmro = -10.0 * lg(p10(-self.stmr) + (-t_ms / 4.0).exp() * p10(-self.telr));
        let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
            - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
            - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
            + 29.0;
        let q = 37.0 - 15.0 * lg(self.qdu);
        let g = 1.07 + 0.258 * q + 0.0602 * q * q;
        let z = 46.0 / 30.0 - g / 40.0;
        let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
        let iq = 15.0 * lg(1.0 + 10f64.powf(y) + 10f64.powf(z));
        iolr + ist + iq
    }

    /// G.107 §3.4 (Id): talker echo `Idte`, listener echo `Idle`, and
    /// absolute delay `Idd`.
    fn id(&self, ro: f64, no: f64, c: &Conditions) -> f64 {
        let t = c.t_ms.max(0.0);
        let roe = -1.5 * (no - self.rlr);
        let terv = self.telr - 40.0 * lg((1.0 + t / 10.0) / (1.0 + t / 150.0))
            + 6.0 * (-0.3 * t * t).exp();
        let re = 80.0 + 2.5 * (terv - 14.0);
        // For T < 1 ms the echo is perceived as sidetone: Idte = 0.
        let idte = if t < 1.0 {
            0.0
        } else {
            ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0)
                * (1.0 - (-t).exp())
        };
        let rle = 10.5 * (self.wepl + 7.0) * (c.tr_ms.max(0.0) + 1.0).powf(-0.25);
        let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
        idte + idle + self.idd(c.ta_ms)
    }

    /// §3.4: `Idd = 0` up to mT; beyond,
    /// `25 {(1 + X^6sT)^(1/6sT) − 3 (1 + (X/3)^6sT)^(1/6sT) + 2}`,
    /// `X = lg(Ta/mT) / lg 2`.
    pub fn idd(&self, ta_ms: f64) -> f64 {
        if ta_ms <= self.mt_ms {
            return 0.0;
        }
        let x = lg(ta_ms / self.mt_ms) / lg(2.0);
        let e = 6.0 * self.st;
        25.0 * ((1.0 + x.powf(e)).powf(1.0 / e) - 3.0 * (1.0 + (x / 3.0).powf(e)).powf(1.0 / e)
            + 2.0)
    }

    /// The rating factor R and its terms for conditions `c`.
    pub fn r_factor(&self, c: &Conditions) -> RFactor {
        let (ro, no) = self.ro();
        let is = self.is(ro, no, c.t_ms);
        let id = self.id(ro, no, c);
        let ie_eff = ie_eff(c.codec, c.ppl_percent, c.burst_r);
        RFactor {
            ro,
            is,
            id,
            ie_eff,
            r: ro - is - id - ie_eff + self.a,
        }
    }
}

/// G.107 §3.5: `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)`.
pub fn ie_eff(codec: CodecImpairment, ppl_percent: f64, burst_r: f64) -> f64 {
    let ppl = ppl_percent.clamp(0.0, 100.0);
    let burst_r = if burst_r > 0.0 { burst_r } else { 1.0 };
    codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_r + codec.bpl)
}

/// G.107 Annex B (B-4): MOS (conversational, CQE) from R.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// §3.5 two-state Markov model: the loss probability `p` (fraction) and
/// mean loss-burst length `L` (packets) give `BurstR = (1 − p) · L`
/// (`L = 1/q`, `p_loss = p'/(p' + q)`, `BurstR = 1/(p' + q)`). Clamped to
/// at least 1: gaps of the jitter buffer that are not losses (silence)
/// would otherwise make bursts look shorter than random.
pub fn burst_ratio(loss_fraction: f64, mean_burst_packets: f64) -> f64 {
    ((1.0 - loss_fraction.clamp(0.0, 1.0)) * mean_burst_packets).max(1.0)
}

/// The channel's numbers at call end (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallStats {
    pub packets_sent: u64,
    /// Valid packets received (duplicates included, as RFC 3550 A.3).
    pub packets_received: u64,
    /// RFC 3550 A.3 `expected` (extended highest − base + 1).
    pub packets_expected: u64,
    /// RFC 3550 A.8 jitter, 8 kHz timestamp units.
    pub jitter_samples: u32,
    /// Mean RTCP round-trip time, if the far end reported one.
    pub rtt_ms: Option<f64>,
    /// Jitter buffer depth at call end (or its mean), ms.
    pub jitter_buffer_ms: f64,
    /// Packetisation interval, ms.
    pub ptime_ms: f64,
    /// Samples concealed by the PLC.
    pub concealed_samples: u64,
    /// Loss bursts (PLC erasures), for the burst ratio.
    pub loss_bursts: u64,
    /// Whether G.711 Appendix I PLC was on.
    pub plc: bool,
}

/// The end-of-call summary for the control plane (plain `Copy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallQuality {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// RFC 3550 A.3 cumulative lost (negative with duplicates).
    pub packets_lost: i64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    /// The mouth-to-ear delay the E-model used.
    pub one_way_delay_ms: f64,
    pub concealed_ms: f64,
    pub burst_ratio: f64,
    pub r_factor: f64,
    pub mos: f64,
}

/// G.711 Appendix I looks back 3.75 ms (its output delay).
const PLC_DELAY_MS: f64 = 3.75;

impl CallQuality {
    /// Builds the summary; `model` is usually `EModel::default()`.
    pub fn from_stats(s: &CallStats, model: &EModel) -> Self {
        let lost = s.packets_expected as i64 - s.packets_received as i64;
        let loss_fraction = if s.packets_expected == 0 {
            0.0
        } else {
            (lost.max(0) as f64 / s.packets_expected as f64).min(1.0)
        };
        let one_way = s.rtt_ms.unwrap_or(0.0) / 2.0
            + s.jitter_buffer_ms
            + s.ptime_ms
            + if s.plc { PLC_DELAY_MS } else { 0.0 };
        let mean_burst = if s.loss_bursts == 0 {
            1.0
        } else {
            lost.max(0) as f64 / s.loss_bursts as f64
        };
        let burst_r = burst_ratio(loss_fraction, mean_burst);
        let codec = if s.plc { G711_PLC } else { G711_NO_PLC };
        let c = Conditions::new(one_way, loss_fraction * 100.0, burst_r, codec);
        let r = model.r_factor(&c).r;
        CallQuality {
            packets_sent: s.packets_sent,
            packets_received: s.packets_received,
            packets_lost: lost,
            loss_percent: loss_fraction * 100.0,
            jitter_ms: s.jitter_samples as f64 / 8.0,
            rtt_ms: s.rtt_ms,
            one_way_delay_ms: one_way,
            concealed_ms: s.concealed_samples as f64 / 8.0,
            burst_ratio: burst_r,
            r_factor: r,
            mos: mos_from_r(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn defaults_give_r_93_2_and_mos_4_41() {
        // G.107 §3: "the default values ... result in a very high quality
        // with a rating factor of R = 93.2"; the terms as in its Table 1
        // example: Ro 94.77, Is 1.41, Id 0.15.
        let m = EModel::default();
        let r = m.r_factor(&Conditions::new(0.0, 0.0, 1.0, G711_PLC));
        assert!(close(r.ro, 94.77, 0.01), "{r:?}");
        assert!(close(r.is, 1.41, 0.02), "{r:?}");
        assert!(close(r.id, 0.15, 0.01), "{r:?}");
        assert!(close(r.r, 93.2, 0.05), "{r:?}");
        assert!(close(mos_from_r(r.r), 4.41, 0.005), "{}", mos_from_r(r.r));
    }

    #[test]
    fn mos_annex_b_points() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(120.0), 4.5);
        // 1 + 0.035*80 + 80*20*20*7e-6 = 4.024; R = 50: 2.575.
        assert!(close(mos_from_r(80.0), 4.024, 1e-9));
        assert!(close(mos_from_r(50.0), 2.575, 1e-9));
        assert_eq!(mos_from_r(f64::NAN), 1.0);
    }

    #[test]
    fn g711_loss_with_g113_bpl() {
        // Ie,eff = 95 Ppl / (Ppl + Bpl) for random loss (BurstR 1).
        // PLC (Bpl 25.1): 1 % -> 3.640, 5 % -> 15.78.
        assert!(close(ie_eff(G711_PLC, 1.0, 1.0), 95.0 / 26.1, 1e-9));
        assert!(close(ie_eff(G711_PLC, 5.0, 1.0), 475.0 / 30.1, 1e-9));
        // Without PLC (Bpl 4.3): 1 % -> 17.92.
        assert!(close(ie_eff(G711_NO_PLC, 1.0, 1.0), 95.0 / 5.3, 1e-9));
        let m = EModel::default();
        let r = |ppl, codec| m.r_factor(&Conditions::new(0.0, ppl, 1.0, codec)).r;
        assert!(close(r(1.0, G711_PLC), 93.2 - 3.64, 0.06));
        assert!(close(r(5.0, G711_PLC), 93.2 - 15.78, 0.06));
        assert!(close(r(1.0, G711_NO_PLC), 93.2 - 17.92, 0.06));
        // Bursty loss hurts more than random loss at the same rate.
        assert!(ie_eff(G711_PLC, 5.0, 2.0) > ie_eff(G711_PLC, 5.0, 1.0));
        assert_eq!(ie_eff(G711_PLC, 0.0, 1.0), 0.0);
    }

    #[test]
    fn absolute_delay_idd_per_section_3_4() {
        let m = EModel::default();
        assert_eq!(m.idd(100.0), 0.0);
        // X = 1: 25 (2^(1/6) - 3 (1 + 3^-6)^(1/6) + 2) = 3.044.
        assert!(close(m.idd(200.0), 3.044, 0.002), "{}", m.idd(200.0));
        // X = 2: 25 (65^(1/6) - 3 (1 + (2/3)^6)^(1/6) + 2) = 24.08.
        assert!(close(m.idd(400.0), 24.08, 0.01), "{}", m.idd(400.0));
        // R falls with delay.
        let mut prev = 100.0;
        for ta in [0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0] {
            let r = m.r_factor(&Conditions::new(ta, 0.0, 1.0, G711_PLC)).r;
            assert!(r < prev, "{ta}: {r}");
            prev = r;
        }
    }

    #[test]
    fn burst_ratio_of_random_and_bursty_loss() {
        // Random loss at p: mean burst 1/(1-p) -> BurstR 1.
        assert!(close(burst_ratio(0.2, 1.0 / 0.8), 1.0, 1e-12));
        // Bursts of 4 at 5 % -> 3.8.
        assert!(close(burst_ratio(0.05, 4.0), 3.8, 1e-12));
        assert_eq!(burst_ratio(0.05, 0.5), 1.0);
    }

    #[test]
    fn summary_from_channel_numbers() {
        // 3000 packets expected (60 s), 30 lost in 30 single-packet bursts,
        // jitter 80 samples, RTT 40 ms, buffer 40 ms, ptime 20 ms.
        let s = CallStats {
            packets_sent: 3001,
            packets_received: 2970,
            packets_expected: 3000,
            jitter_samples: 80,
            rtt_ms: Some(40.0),
            jitter_buffer_ms: 40.0,
            ptime_ms: 20.0,
            concealed_samples: 30 * 160,
            loss_bursts: 30,
            plc: true,
        };
        let q = CallQuality::from_stats(&s, &EModel::default());
        assert_eq!(q.packets_lost, 30);
        assert!(close(q.loss_percent, 1.0, 1e-9));
        assert!(close(q.jitter_ms, 10.0, 1e-9));
        assert!(close(q.concealed_ms, 600.0, 1e-9));
        assert!(close(q.one_way_delay_ms, 20.0 + 40.0 + 20.0 + 3.75, 1e-9));
        assert!(close(q.burst_ratio, 1.0, 1e-9));
        // 83.75 ms: no Idd; Ie,eff 3.64 for 1 %, plus the small echo terms.
        assert!(
            q.r_factor < 93.2 - 3.64 && q.r_factor > 93.2 - 3.64 - 3.0,
            "{q:?}"
        );
        assert!(close(q.mos, mos_from_r(q.r_factor), 1e-12));
        // Nothing received: no division by zero.
        let q = CallQuality::from_stats(&CallStats::default(), &EModel::default());
        assert_eq!(q.loss_percent, 0.0);
        assert!(q.r_factor.is_finite());
    }
}
