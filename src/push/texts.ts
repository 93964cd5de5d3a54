/** The few texts Faultline writes to owners itself (guides bring their own), per locale. */
import { pickLocale } from '../guides/locale.js';

const SURVEY = {
  'zh-CN': {
    title: '维修服务评价',
    summary: (model: string) =>
      `您的 ${model} 报修已处理完毕。请为本次服务打分（1-5 分），也可以留言告诉我们。`,
  },
  en: {
    title: 'How did the repair go?',
    summary: (model: string) =>
      `Your service request for your ${model} is resolved. How satisfied are you, from 1 to 5? You can add a comment.`,
  },
} as const;

export function surveyText(
  locale: string | null,
  model: string,
): { locale: string; title: string; summary: string } {
  const chosen = (pickLocale(locale, Object.keys(SURVEY), 'zh-CN') ?? 'en') as keyof typeof SURVEY;
  const t = SURVEY[chosen];
  return { locale: chosen, title: t.title, summary: t.summary(model) };
}
